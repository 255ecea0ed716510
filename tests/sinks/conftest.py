"""Fixtures for sink tests: a simulated week enriched in-process, fresh chDB stores, and the
sink settings and sensor health records the loop (test_loop.py) and broker (test_sink.py) tests share.

The week is small (a few thousand packets a day) so that every test stays fast; the
ground truth comes from the simulator itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from core.settings import SinkSettings
from producers.sim.simulate import simulate_quarter
from schemas.enriched import Enriched
from sinks.store import Store
from streams.enrich import Enricher
from streams.fingerprints import SourceVerdicts
from streams.geo import GeoResolver
from streams.services import ServiceRegistry

PACKETS_TOPIC = "test.packets"
PARTITIONS = 4


@dataclass(frozen=True)
class EnrichedWeek:
    """A simulated week, enriched as a worker would: batches, their frames, the truth."""

    truth: dict[str, Any]
    batches: list[Enriched]
    frames: list[bytes]
    records: list[dict[str, Any]]
    geo_db_version: str

    @property
    def packets(self) -> int:
        return sum(len(e.batch) for e in self.batches)


def enrich_week(packets_per_day: int = 4000, days: int = 7, batch_size: int = 1500) -> EnrichedWeek:
    """Simulate ``days`` days and enrich every batch; batch i 'came from' partition i % 4."""
    sim = simulate_quarter(
        "2022Q2", packets_per_day=packets_per_day, days=days, seed=5, batch_size=batch_size
    )
    with GeoResolver.default() as geo:
        enricher = Enricher(geo, ServiceRegistry.load(), SourceVerdicts())
        batches = [
            enricher.enrich(b, PACKETS_TOPIC, i % PARTITIONS, i // PARTITIONS)
            for i, b in enumerate(sim.batches())
        ]
        records = [enricher.record(e) for e in batches]
        frames = [enricher.encode(e) for e in batches]
        version = geo.geo_db_version
    return EnrichedWeek(sim.ground_truth().to_dict(), batches, frames, records, version)


@pytest.fixture(scope="session")
def week() -> EnrichedWeek:
    """A simulated, enriched week (built once per session)."""
    return enrich_week()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A migrated chDB store in a fresh folder, closed afterwards (one chDB path per process)."""
    s = Store.open(f"chdb://{tmp_path / 'store'}")
    s.migrate()
    yield s
    s.close()


def sink_settings(tmp_path: Path, **over: Any) -> SinkSettings:
    """Sink settings for a test: the ``store`` fixture's chDB path, a group of its own, short waits."""
    values: dict[str, Any] = {
        "dsn": f"chdb://{tmp_path / 'store'}",
        "group_id": f"sink-{tmp_path.name}",
        "batch_rows": 4000,
        "linger": 0.3,
        "max_backoff": 0.5,
    }
    values.update(over)
    return SinkSettings(**values)


def health_record(packets_seen: int) -> dict[str, Any]:
    """A SensorHealth record of sensor ``sim-0`` that has seen ``packets_seen`` packets."""
    return {
        "sensor_id": "sim-0",
        "ts": datetime(2022, 4, 1, 0, 0, packets_seen % 60, tzinfo=UTC),
        "started": datetime(2022, 4, 1, tzinfo=UTC),
        "source": "simulate:2022Q2",
        "packets_seen": packets_seen,
        "packets_dropped_kernel": 0,
        "packets_malformed": {},
        "packets_out_of_prefix": 0,
        "packets_sent": packets_seen,
        "batches_sent": 1,
        "send_failed": 0,
        "monitored_addresses": 256,
        "prefixes": ["198.51.100.0/24"],
        "version": "0.1.0",
    }
