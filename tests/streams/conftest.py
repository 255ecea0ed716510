"""Fixtures for streams tests: tiny MaxMind-format databases written with mmdb-writer.

The networks use real-looking public prefixes (and the IPv6 documentation prefix) so that
lookups exercise both the IPv4 subtree (::/96) and the IPv6 tree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

BUILD = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)


def dbip_record(code: str, name: str) -> dict[str, Any]:
    """A record shaped like DB-IP City Lite's (country, continent, city, location)."""
    return {
        "city": {"names": {"en": "Somewhere"}},
        "continent": {"code": "XX", "names": {"en": "Somewhere"}},
        "country": {"iso_code": code, "names": {"de": name.upper(), "en": name}},
        "location": {"latitude": 1.5, "longitude": 2.5},
    }


# network -> record of the tiny city database
CITY_NETWORKS: dict[str, dict[str, Any]] = {
    "1.1.1.0/24": dbip_record("AU", "Australia"),
    "8.8.8.0/24": dbip_record("US", "United States"),
    "81.2.69.0/24": dbip_record("GB", "United Kingdom"),
    "2001:db8::/32": dbip_record("DE", "Germany"),
    # GeoLite2 leaves `country` out for some networks and keeps `registered_country`.
    "100.64.0.0/10": {"registered_country": {"iso_code": "JP", "names": {"en": "Japan"}}},
    # A record with neither: the region is unknown.
    "192.0.2.0/24": {"continent": {"code": "EU", "names": {"en": "Europe"}}},
}
# network -> record of the tiny ASN database (GeoLite2-ASN layout)
ASN_NETWORKS: dict[str, dict[str, Any]] = {
    "1.1.1.0/24": {"autonomous_system_number": 13335, "autonomous_system_organization": "Cloudflare, Inc."},
    "8.8.8.0/24": {"autonomous_system_number": 15169, "autonomous_system_organization": "Google LLC"},
    "2001:db8::/32": {"autonomous_system_number": 64496, "autonomous_system_organization": "Example AS"},
}
# Addresses inside the networks above, and some outside every one of them.
KNOWN_ADDRESSES = ["1.1.1.1", "1.1.1.200", "8.8.8.8", "81.2.69.142", "100.64.1.2", "192.0.2.7", "2001:db8::1"]
UNKNOWN_ADDRESSES = ["10.0.0.1", "203.0.113.9", "2001:db9::1", "::1"]


class _FixedEpochWriter(MMDBWriter):
    def __init__(self, build_epoch: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._epoch = build_epoch

    def _build_meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = super()._build_meta()
        meta["build_epoch"] = self._epoch
        return meta


def write_mmdb(path: Path, database_type: str, networks: dict[str, dict[str, Any]]) -> Path:
    """Write ``networks`` (CIDR -> record) to an IPv6 .mmdb with IPv4 at ::/96, built at BUILD."""
    writer = _FixedEpochWriter(
        int(BUILD.timestamp()),
        ip_version=6,
        ipv4_compatible=True,
        database_type=database_type,
        languages=["en"],
        description={"en": "darkscope test database"},
        int_type="u32",
        float_type="f64",
    )
    for cidr, record in networks.items():
        writer.insert_network(IPSet([cidr]), record)
    writer.to_db_file(str(path))
    return path


@pytest.fixture(scope="session")
def city_mmdb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny city database in DB-IP City Lite layout."""
    return write_mmdb(tmp_path_factory.mktemp("geo") / "city.mmdb", "DBIP-City-Lite", CITY_NETWORKS)


@pytest.fixture(scope="session")
def asn_mmdb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny ASN database in GeoLite2-ASN layout."""
    return write_mmdb(tmp_path_factory.mktemp("geo") / "asn.mmdb", "GeoLite2-ASN", ASN_NETWORKS)
