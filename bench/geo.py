"""GeoIP throughput: GeoResolver.enrich on whole batches against per-packet lookups, same run.

    .venv/bin/python bench/geo.py [--packets 1000000] [--batch 10000] [--sources 50000]
        [--zipf 1.0] [--v6-share 0.02] [--asn-db PATH] [--reference-packets 100000]

Traffic: --sources distinct source addresses (random public IPv4, plus --v6-share IPv6),
drawn with Zipf-like weights (rank^-zipf) as darknet sources repeat: a few scanners send most
packets. Prints packets/s for
  - GeoResolver.enrich, cold (empty cache, first pass) and warm (second pass over the same
    stream), with its cache hit rate, on the DB-IP City Lite database (and the ASN database
    when --asn-db is given);
  - geoip2 ``Reader.city(ip)`` per packet, and maxminddb ``Reader.get(ip)`` per packet, on
    the same city database (address text made per packet as a per-event consumer would);
and the ratios. Benchmarks print figures; they assert nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import geoip2.database
import geoip2.errors
import maxminddb
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from schemas.batch import PacketBatch
from streams.geo import GeoResolver
from streams.geodb import default_city_db


def make_stream(n: int, sources: int, zipf: float, v6_share: float, seed: int) -> PacketBatch:
    """``n`` packets from ``sources`` distinct addresses with Zipf-like repeat rates."""
    rng = np.random.default_rng(seed)
    n6 = int(sources * v6_share)
    v4 = rng.integers(0x01000000, 0xDF000000, sources - n6, dtype=np.uint32)  # 1.0.0.0 - 222.255.255.255
    # IPv6 sources in 2000::/3 with a realistic /32 spread (random lower bits).
    v6 = rng.integers(0, 256, (n6, 16), dtype=np.uint8)
    v6[:, 0] = 0x20 | (v6[:, 0] & 0x0F)
    weights = 1.0 / np.arange(1, sources + 1) ** zipf
    pick = rng.choice(sources, size=n, p=weights / weights.sum())
    rng.shuffle(pick)
    batch = PacketBatch.zeros("bench", 0, n)
    is6 = pick >= sources - n6
    batch["ip_version"][:] = np.where(is6, 6, 4)
    batch["src"][~is6] = v4[pick[~is6]]
    batch["src6"][is6] = v6[pick[is6] - (sources - n6)].view("V16").ravel()
    return batch


def rate(fn: Callable[[], int], repeat: int) -> float:
    """Median items/s of ``fn`` (which returns how many items it did) over ``repeat`` runs."""
    rates = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        n = fn()
        rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--sources", type=int, default=50_000)
    ap.add_argument("--zipf", type=float, default=1.0, help="Zipf exponent of source repeat rates")
    ap.add_argument("--v6-share", type=float, default=0.02, help="share of IPv6 sources")
    ap.add_argument("--cache-size", type=int, default=65536)
    ap.add_argument("--city-db", type=Path, default=None, help="default: DB-IP City Lite (package)")
    ap.add_argument("--asn-db", type=Path, default=None)
    ap.add_argument(
        "--reference-packets", type=int, default=100_000, help="packets for the slow per-packet runs"
    )
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    city_db = args.city_db or default_city_db()
    stream = make_stream(args.packets, args.sources, args.zipf, args.v6_share, seed=1)
    batches = [stream.slice(i, min(i + args.batch, len(stream))) for i in range(0, len(stream), args.batch)]
    distinct = len(np.unique(stream["src"][stream["ip_version"] == 4])) + len(
        np.unique(stream["src6"][stream["ip_version"] == 6])
    )
    per_batch = statistics.median(
        len(np.unique(b["src"][b["ip_version"] == 4])) + len(np.unique(b["src6"][b["ip_version"] == 6]))
        for b in batches
    )
    print(
        f"stream: {len(stream):,} packets in batches of {args.batch:,}; {distinct:,} distinct sources "
        f"(zipf {args.zipf}, {args.v6_share:.0%} IPv6); median {per_batch:,.0f} distinct per batch"
    )
    print(f"city db: {city_db}")

    results: dict[str, float] = {}
    for label, asn_db in [("enrich", None), ("enrich + ASN db", args.asn_db)]:
        if label != "enrich" and asn_db is None:
            continue
        geo = GeoResolver(city_db, asn_db, args.cache_size)
        t0 = time.perf_counter()
        for b in batches:
            geo.enrich(b)
        cold = len(stream) / (time.perf_counter() - t0)
        cold_hit = geo.hits / max(1, geo.hits + geo.misses)
        hits, misses = geo.hits, geo.misses

        def warm_pass(geo: GeoResolver = geo) -> int:
            for b in batches:
                geo.enrich(b)
            return len(stream)

        warm = rate(warm_pass, args.repeat)
        warm_hit = (geo.hits - hits) / max(1, geo.hits - hits + geo.misses - misses)
        results[f"{label} (cold)"] = cold
        results[f"{label} (warm)"] = warm
        print(f"{label:<17} cold {cold:>12,.0f} pkt/s (cache hits {cold_hit:.1%})")
        print(f"{label:<17} warm {warm:>12,.0f} pkt/s (cache hits {warm_hit:.1%})")
        geo.close()

    ref = stream.slice(0, min(args.reference_packets, len(stream)))
    ref_ver, ref_v4, ref_v6 = ref["ip_version"].tolist(), ref["src"].tolist(), ref["src6"].tolist()

    def texts() -> list[str]:
        return [
            str(ipaddress.IPv6Address(b)) if v == 6 else str(ipaddress.IPv4Address(a))
            for v, a, b in zip(ref_ver, ref_v4, ref_v6, strict=True)
        ]

    with geoip2.database.Reader(str(city_db)) as gr:

        def geoip2_city() -> int:
            found: list[str | None] = []
            for ip in texts():
                with contextlib.suppress(geoip2.errors.AddressNotFoundError):
                    found.append(gr.city(ip).country.iso_code)
            return len(ref)

        results["geoip2 city() per packet"] = rate(geoip2_city, args.repeat)

    with maxminddb.open_database(str(city_db), maxminddb.MODE_MMAP_EXT) as mr:

        def maxminddb_get() -> int:
            for ip in texts():
                mr.get(ip)
            return len(ref)

        results["maxminddb get() per packet"] = rate(maxminddb_get, args.repeat)

    base = results["geoip2 city() per packet"]
    print(f"\n{'method':<30} {'pkt/s':>14} {'x geoip2 city()':>16}")
    for name, value in results.items():
        print(f"{name:<30} {value:>14,.0f} {value / base:>15.1f}x")


if __name__ == "__main__":
    main()
