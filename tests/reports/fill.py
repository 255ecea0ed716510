"""Fill a store with simulated quarters, without Kafka: simulate -> Enricher -> Store; or with a
few hand-written packets on chosen days (``fill_days``: a sensor's outage in a small store)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow as pa

from producers.sim.simulate import simulate_quarter
from producers.sim.truth import GroundTruth
from sinks.arrow import EnrichedColumns, columns_from_enriched
from sinks.store import Store
from streams.enrich import Enricher
from streams.geo import GeoResolver
from streams.services import ServiceRegistry

PREFIX = "198.51.100.0/24"
# Packets per insert. Every insert also runs the eight rollup views: a quarter inserted a day
# at a time (91 inserts) spent most of its time per insert, not per row.
INSERT_ROWS = 1_000_000


def fill_quarter(
    store: Store,
    quarter: str,
    *,
    sensor: str,
    packets_per_day: int,
    seed: int = 0,
    flat: bool = False,
    previous: GroundTruth | None = None,
    prefix: Sequence[str] = (PREFIX,),
    days: int | None = None,
) -> tuple[GroundTruth, float]:
    """Simulate ``quarter``, enrich every batch and insert it; returns the truth and seconds."""
    t0 = time.perf_counter()
    sim = simulate_quarter(
        quarter,
        packets_per_day=packets_per_day,
        seed=seed,
        flat=flat,
        sensor_id=sensor,
        prefix=list(prefix),
        days=days,
        batch_size=50_000,
        previous=previous,
    )
    with GeoResolver.default() as geo:
        enricher = Enricher(geo, ServiceRegistry.load())
        group: list[EnrichedColumns] = []
        for batch in sim:
            group.append(columns_from_enriched(enricher.enrich(batch)))
            if sum(len(c) for c in group) >= INSERT_ROWS:
                store.insert_enriched(group)
                group = []
        if group:
            store.insert_enriched(group)
    truth = sim.ground_truth()
    first = datetime.combine(truth.days[0], datetime.min.time(), tzinfo=UTC)
    last = datetime.combine(truth.days[-1], datetime.max.time(), tzinfo=UTC).replace(microsecond=0)
    seen = int(truth.kind_totals.sum())
    record: dict[str, Any] = {
        "sensor_id": sensor,
        "ts": last,
        "started": first,
        "source": f"simulate:{quarter}",
        "packets_seen": seen + 1000,
        "packets_dropped_kernel": 0,
        "packets_out_of_prefix": 1000,
        "packets_sent": seen,
        "batches_sent": 0,
        "send_failed": 0,
        "monitored_addresses": 256,
        "prefixes": list(prefix),
        "version": "test",
    }
    store.insert_sensor_health([record])
    return truth, time.perf_counter() - t0


def fill_days(store: Store, days: Sequence[date], *, sensor: str) -> int:
    """Insert ``1 + i % 3`` telnet packets from US on the ``i``-th of ``days`` (noon UTC, a
    minute apart); the store fills the other columns with their defaults. Returns the packets."""
    ts = [
        datetime.combine(d, datetime.min.time(), tzinfo=UTC) + timedelta(hours=12, minutes=k)
        for i, d in enumerate(days)
        for k in range(1 + i % 3)
    ]
    n = len(ts)
    table = pa.table(
        {
            "ts": pa.array(ts, pa.timestamp("ns", tz="UTC")),
            "sensor": [sensor] * n,
            "ip_version": pa.array([4] * n, pa.uint8()),
            "protocol": pa.array([6] * n, pa.uint8()),
            "dport": pa.array([23] * n, pa.uint16()),
            "region": ["US"] * n,
            "region_name": ["United States"] * n,
        }
    )
    store.insert_arrow("packets", table)
    return n
