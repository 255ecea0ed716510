"""Traffic simulator: a darknet quarter of Mirai, scanners, backscatter and noise as PacketBatches.

``simulate_quarter`` returns a ``Simulation``: iterate it for PacketBatches (time order, one
day after another, at most ``batch_size`` packets each, seeded so the same arguments give the
same batches), then ask it for the ground truth. ``run_simulation`` writes capture files and
the ground-truth JSON for the CLI (``darkscope simulate``).

The scenario lives in ``producers.sim.model`` (volumes, shapes, events), the tools' headers in
``producers.sim.packets``, the source addresses in ``producers.sim.regions`` (real ranges of a
city database) and the ground truth (and its JSON layout) in ``producers.sim.truth``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from core.errors import ConfigError
from producers.pcapwriter import open_writer
from producers.sim.ipv6 import Ipv6Day, plant_ipv6_day
from producers.sim.model import CATEGORIES, KINDS, RANDOM_PORT, REGIONS, VolumePlan, expected_rankings
from producers.sim.packets import (
    MIN_EPISODE,
    Episode,
    backscatter_day,
    empty_columns,
    fill_scan,
    random_ports,
    separate_fingerprints,
    source_attributes,
)
from producers.sim.regions import RegionRanges, default_geo_db, load_region_ranges, sample_addresses
from producers.sim.space import SensorSpace
from producers.sim.truth import DayTraffic, GroundTruth
from schemas.batch import PacketBatch

__all__ = ["RunResult", "SensorSpace", "Simulation", "run_simulation", "simulate_quarter"]

logger = logging.getLogger(__name__)

Array = npt.NDArray[Any]
DAY_NS = 86_400 * 10**9
BACKSCATTER = ("bs_tcp", "bs_icmp")
# Sources per expected packet/day of a kind in a region, and the skew of the draw (u ** skew):
# a Mirai bot hits a /24 about once a day (160 pps, scanner.c SCANNER_RAW_PPS), scanners often.
POOL_RATE = {
    "mirai": (0.8, 1.0),
    "zmap": (0.005, 1.5),
    "masscan": (0.005, 1.5),
    "nmap": (0.01, 1.5),
    "noise_tcp": (0.3, 1.3),
    "noise_udp": (0.3, 1.3),
    "noise_icmp": (0.3, 1.3),
}


@dataclass
class _Pool:
    """Senders of one kind across regions; rows of a region are ``first[r]:first[r]+count[r]``."""

    columns: dict[str, Array]
    first: Array
    count: Array
    skew: float


class Simulation:
    """A seeded simulated quarter: iterate for PacketBatches; ask for its ground truth."""

    def __init__(
        self,
        plan: VolumePlan,
        sensor: SensorSpace,
        ranges: RegionRanges,
        *,
        sensor_id: str,
        seed: int,
        days: int | None,
        batch_size: int,
        previous: GroundTruth | None,
        geo_db: str,
    ) -> None:
        if seed < 0 or batch_size <= 0 or (days is not None and days <= 0):
            raise ConfigError("seed must be >= 0, batch_size and days positive")
        ranges.require(REGIONS)
        self.plan, self.sensor, self.ranges = plan, sensor, ranges
        self.sensor_id, self.seed, self.batch_size = sensor_id, seed, batch_size
        self.days = plan.days[: days or len(plan.days)]
        self._qkey = int(plan.model.quarter[:4]) * 10 + int(plan.model.quarter[5])
        self._avoid = frozenset(p for c in CATEGORIES.values() for p, _ in c.ports if p != RANDOM_PORT)
        meta = {
            "flat": plan.flat,
            "seed": seed,
            "packets_per_day": plan.packets_per_day,
            "sensor_id": sensor_id,
            "prefixes": sensor.prefixes,
            "geo_db": {"path": geo_db, "build_epoch": ranges.build_epoch},
        }
        if previous is not None:
            prev = (
                previous.quarter,
                [k for k, _ in previous.port_ranking()],
                [k for k, _ in previous.region_ranking()],
                "simulated",
            )
        elif plan.model.previous:
            ports, regions = expected_rankings(plan.model.previous)
            prev = (plan.model.previous, ports, regions, "model")
        else:
            prev = None
        self.truth = GroundTruth(plan.model.quarter, self.days, meta, plan.events(), prev)

    def __iter__(self) -> Iterator[PacketBatch]:
        return self.batches()

    def batches(self) -> Iterator[PacketBatch]:
        """PacketBatches in time order, numbered from 0; the ground truth fills in as days pass."""
        seq = 0
        for index in range(len(self.days)):
            traffic = self.generate_day(index)
            self.truth.add_day(index, traffic)
            columns = traffic.columns
            if self.sensor.v6:  # IPv6 traffic beside the modelled (IPv4) quarter
                planted = self.generate_ipv6_day(index)
                self.truth.add_ipv6_day(index, planted)
                merged = {k: np.concatenate([v, planted.columns[k]]) for k, v in columns.items()}
                order = np.argsort(merged["ts"], kind="stable")
                columns = {k: v[order] for k, v in merged.items()}
            n = len(columns["ts"])
            for start in range(0, n, self.batch_size):
                cols = {k: v[start : start + self.batch_size] for k, v in columns.items()}
                yield PacketBatch(self.sensor_id, seq, cols)
                seq += 1

    def ground_truth(self) -> GroundTruth:
        """The ground truth of every simulated day (generating the days not yet iterated)."""
        for index in range(len(self.days)):
            if index not in self.truth.daily:
                self.truth.add_day(index, self.generate_day(index))
        return self.truth

    def write_ground_truth(self, path: str | Path) -> Path:
        """Write the ground-truth JSON (layout in the producers.sim.truth docstring)."""
        return self.ground_truth().write(path)

    @cached_property
    def pools(self) -> dict[str, _Pool]:
        """Source pools per kind, drawn once from the regions' real address ranges."""
        rng = np.random.default_rng([self.seed, self._qkey, 1])
        _, reg_i, kinds, _ = self.plan.cells
        expected = self.plan.expected
        kind_arr = np.array(kinds)
        need: dict[str, np.ndarray[Any, Any]] = {}
        for kind in KINDS:
            mask = kind_arr == kind
            per_region = np.zeros((expected.shape[0], len(REGIONS)))
            for j in range(len(REGIONS)):
                per_region[:, j] = expected[:, mask & (reg_i == j)].sum(axis=1)
            if kind in BACKSCATTER:  # victims for the busiest day, plus routers for ICMP errors
                victims = np.ceil(
                    per_region.max(axis=0) * 1.6 / MIN_EPISODE + 3 * (per_region.max(axis=0) > 0)
                )
                need[kind] = victims.astype(np.int64) * (2 if kind == "bs_icmp" else 1)
            else:
                rate, _ = POOL_RATE[kind]
                mean = per_region.mean(axis=0)
                need[kind] = np.where(mean > 0, np.clip(np.ceil(mean * rate), 1, 50_000), 0).astype(np.int64)
        addresses = {}
        for j, code in enumerate(REGIONS):
            total = int(sum(need[k][j] for k in KINDS))
            addresses[j] = sample_addresses(self.ranges, code, total, rng, self.sensor.ranges())
        return {kind: self._pool(kind, need, addresses, rng) for kind in KINDS}

    def _pool(
        self, kind: str, need: dict[str, Array], addresses: dict[int, Array], rng: np.random.Generator
    ) -> _Pool:
        offset = sum((need[k] for k in KINDS[: KINDS.index(kind)]), np.zeros(len(REGIONS), np.int64))
        counts = need[kind]
        addr = np.concatenate([addresses[j][offset[j] : offset[j] + counts[j]] for j in range(len(REGIONS))])
        region = np.repeat(np.arange(len(REGIONS)), counts)
        cols: dict[str, Array] = {"addr": addr.astype(np.uint32), "region": region}
        cols.update(source_attributes(kind, len(addr), rng))
        first = np.concatenate([[0], np.cumsum(counts)[:-1]])
        if kind == "bs_icmp":  # the first half of each region's rows are victims, then routers
            half = counts // 2
            local = np.arange(len(addr)) - first[region]
            cols["victim"] = local < half[region]
            cols["peer"] = np.where(cols["victim"], np.arange(len(addr)) + half[region], -1)
        else:
            cols["victim"] = np.ones(len(addr), dtype=bool)
        return _Pool(cols, first, counts, POOL_RATE.get(kind, (0.0, 1.0))[1])

    def generate_day(self, index: int) -> DayTraffic:
        """All packets of day ``index`` (0 = first day of the quarter), sorted by time."""
        rng = np.random.default_rng([self.seed, self._qkey, 0, index])
        day = self.days[index]
        start_ns = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 10**9
        counts = self.plan.day_counts(index, rng)
        _, reg_i, kinds, _ = self.plan.cells
        kind_arr = np.array(kinds)
        parts: list[tuple[dict[str, Array], Array, int]] = []
        episodes: list[Episode] = []
        for k, kind in enumerate(KINDS):
            pool = self.pools[kind]
            cells = np.flatnonzero((kind_arr == kind) & (counts > 0))
            if kind in BACKSCATTER:
                per_region = np.bincount(reg_i[cells], weights=counts[cells], minlength=len(REGIONS))
                cols, rows, found = backscatter_day(
                    kind,
                    rng,
                    per_region.astype(np.int64),
                    pool.columns,
                    list(REGIONS),
                    start_ns,
                    lambda n: self.sensor.pick(rng, n),
                    self._avoid,
                )
                episodes.extend(found)
            else:
                cols, rows = self._scan_day(kind, rng, cells, counts, start_ns)
            parts.append((cols, pool.columns["region"][rows], k))
        merged = {name: np.concatenate([p[0][name] for p in parts]) for name in parts[0][0]}
        region = np.concatenate([p[1] for p in parts]).astype(np.int8)
        kind_idx = np.concatenate([np.full(len(p[1]), p[2], np.int8) for p in parts])
        separate_fingerprints(merged, kind_idx, KINDS)
        # Whole packets, as a capture with a large snaplen holds them.
        merged["total_length"] = merged["length"].astype(np.uint32)
        merged["caplen"] = merged["total_length"].copy()
        order = np.argsort(merged["ts"], kind="stable")
        return DayTraffic(
            day, {k: v[order] for k, v in merged.items()}, region[order], kind_idx[order], episodes
        )

    def generate_ipv6_day(self, index: int) -> Ipv6Day:
        """The IPv6 packets planted on day ``index`` (a sensor with an IPv6 prefix only)."""
        rng = np.random.default_rng([self.seed, self._qkey, 6, index])
        day = self.days[index]
        start_ns = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 10**9
        return plant_ipv6_day(rng, index, start_ns, lambda n: self.sensor.pick6(rng, n))

    def _scan_day(
        self, kind: str, rng: np.random.Generator, cells: Array, counts: Array, start_ns: int
    ) -> tuple[dict[str, Array], Array]:
        """Probes of one kind for a day: each row's cell gives its port and its region's pool."""
        cat_i, reg_i, _, _ = self.plan.cells
        row_cell = np.repeat(cells, counts[cells])
        n = len(row_cell)
        cols = empty_columns(n)
        cols["ts"][:] = start_ns + rng.integers(0, DAY_NS, size=n)
        cols["dst"][:] = self.sensor.pick(rng, n)
        cats = list(CATEGORIES.values())
        row_cat = cat_i[row_cell]
        u = rng.random(n)
        for c in np.unique(row_cat):
            rows = row_cat == c
            cat = cats[c]
            cols["protocol"][rows] = cat.protocol
            if cat.ports[0][0] == RANDOM_PORT:
                cols["dport"][rows] = random_ports(rng, int(rows.sum()), self._avoid)
            elif cat.protocol != 1:
                edges = np.cumsum([f for _, f in cat.ports])
                pick = np.minimum(np.searchsorted(edges, u[rows], side="right"), len(edges) - 1)
                cols["dport"][rows] = np.array([p for p, _ in cat.ports], np.uint16)[pick]
        pool = self.pools[kind]
        region = reg_i[row_cell]
        draw = (pool.count[region] * rng.random(n) ** pool.skew).astype(np.int64)
        src_rows = pool.first[region] + np.minimum(draw, pool.count[region] - 1)
        cols["src"][:] = pool.columns["addr"][src_rows]
        fill_scan(kind, rng, cols, {k: v[src_rows] for k, v in pool.columns.items()})
        return cols, src_rows


def simulate_quarter(
    quarter: str = "2022Q2",
    *,
    packets_per_day: int = 100_000,
    prefix: str | Sequence[str] = "198.51.100.0/24",
    sensor_id: str = "sim-0",
    seed: int = 0,
    flat: bool = False,
    days: int | None = None,
    geo_db: str | Path | None = None,
    batch_size: int = 10_000,
    cache_dir: str | Path | None = None,
    previous: GroundTruth | None = None,
) -> Simulation:
    """A seeded simulation of ``quarter`` (see module docstring); nothing is generated yet.

    ``days`` keeps the first N days; ``previous`` (the previous quarter's truth) makes the
    previous-quarter ranks of the top 5 come from simulated data instead of the model.
    """
    plan = VolumePlan(quarter, packets_per_day, flat=flat)
    ranges = load_region_ranges(geo_db, cache_dir=cache_dir)
    db = str(geo_db) if geo_db is not None else str(default_geo_db())
    return Simulation(
        plan,
        SensorSpace(prefix),
        ranges,
        sensor_id=sensor_id,
        seed=seed,
        days=days,
        batch_size=batch_size,
        previous=previous,
        geo_db=db,
    )


@dataclass
class RunResult:
    """What ``run_simulation`` wrote."""

    captures: list[Path] = field(default_factory=list)
    truths: list[Path] = field(default_factory=list)
    packets: int = 0
    seconds: float = 0.0


def run_simulation(
    out_dir: str | Path,
    *,
    quarter: str = "2022Q2",
    packets_per_day: int = 100_000,
    fmt: Literal["pcap", "pcapng"] = "pcap",
    split: Literal["day", "quarter"] = "day",
    previous: bool = False,
    days: int | None = None,
    flat: bool = False,
    seed: int = 0,
    prefix: str | Sequence[str] = "198.51.100.0/24",
    sensor_id: str = "sim-0",
    geo_db: str | Path | None = None,
    cache_dir: str | Path | None = None,
    nanosecond: bool = True,
    progress: Callable[[str, int], None] | None = None,
) -> RunResult:
    """Write a simulated quarter (and with ``previous`` the quarter before) to ``out_dir``.

    Files: ``<out>/<quarter>/<YYYY-MM-DD>.<fmt>`` (or ``<quarter>.<fmt>`` with split='quarter')
    and ``<out>/<quarter>/ground-truth.json``. ``progress(quarter, packets_so_far)`` is called
    after each batch.
    """
    if fmt not in ("pcap", "pcapng") or split not in ("day", "quarter"):
        raise ConfigError(f"format must be pcap or pcapng and split day or quarter, got {fmt}, {split}")
    started = time.perf_counter()
    result = RunResult()
    quarters = [quarter]
    prev_model = VolumePlan(quarter, packets_per_day).model.previous
    if previous:
        if prev_model is None:
            raise ConfigError(f"no model for the quarter before {quarter}")
        quarters.insert(0, prev_model)
    prev_truth: GroundTruth | None = None
    for q in quarters:
        sim = simulate_quarter(
            q,
            packets_per_day=packets_per_day,
            prefix=prefix,
            sensor_id=sensor_id,
            seed=seed,
            flat=flat,
            days=days,
            geo_db=geo_db,
            cache_dir=cache_dir,
            previous=prev_truth if q == quarter else None,
        )
        folder = Path(out_dir) / q
        folder.mkdir(parents=True, exist_ok=True)
        writer, current = None, ""
        try:
            for batch in sim:
                name = q if split == "quarter" else _day_name(int(batch["ts"][0]))
                if name != current:
                    if writer is not None:
                        writer.close()
                    path = folder / f"{name}.{fmt}"
                    writer, current = open_writer(path, fmt, nanosecond=nanosecond), name
                    result.captures.append(path)
                assert writer is not None
                writer.write(batch)
                result.packets += len(batch)
                if progress is not None:
                    progress(q, result.packets)
        finally:
            if writer is not None:
                writer.close()
        prev_truth = sim.ground_truth()
        result.truths.append(sim.write_ground_truth(folder / "ground-truth.json"))
        logger.info(
            "simulated %s: %d packets in %d files", q, prev_truth.kind_totals.sum(), len(result.captures)
        )
    result.seconds = time.perf_counter() - started
    return result


def _day_name(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns // 10**9, tz=UTC).date().isoformat()
