"""Fixtures for sink tests: a simulated week enriched in-process, and fresh chDB stores.

The week is small (a few thousand packets a day) so that every test stays fast; the
ground truth comes from the simulator itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

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
