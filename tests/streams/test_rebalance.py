"""Counts stay exact when a rebalance moves counts and windows partitions between real worker
processes (a worker joins mid-stream, then the first one stops; a worker is killed and another
starts): streams.takeover. ``bench/rebalance_soak.py`` runs these scenarios N times."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from core.publisher import Publisher
from core.settings import TopicNames
from core.topics import watermarks
from producers.sim.simulate import simulate_quarter
from schemas.batch import PacketBatch
from schemas.codec import Codec
from streams.alerts import record_key
from tests.kafka_helpers import read_all
from tests.streams.harness import (
    WorkerPool,
    alerts,
    hourly_totals,
    hours_closed,
    settled_windows,
    wait_for,
    windows,
)

pytestmark = pytest.mark.broker


def _send(pub: Publisher, topic: str, batches: list[PacketBatch], pause: float) -> None:
    codec = Codec()
    for b in batches:
        # Unkeyed, as the sensors send them: batches spread over every packets partition.
        pub.send(topic, codec.encode_batch(b), len(b))
        pub.flush()
        time.sleep(pause)


def _enriched(bootstrap: str, topic: str) -> list[tuple[int, int]]:
    """(partition, offset) of the packet batch behind each enriched record."""
    codec = Codec()
    records = (codec.decode(m.value() or b"").record for m in read_all(bootstrap, topic))
    return [(r["source_partition"], r["source_offset"]) for r in records]


def _sum_fp(wins: dict, name: str) -> int:
    return sum(n for k, n in hourly_totals(wins, "fp_region").items() if k.startswith(f"{name}/"))


def _day(tmp: Path, packets: int, seed: int) -> tuple[list[PacketBatch], dict[str, Any]]:
    """A simulated day in batches of 500 packets, and its ground truth."""
    sim = simulate_quarter(
        "2022Q2",
        packets_per_day=packets,
        days=1,
        seed=seed,
        batch_size=500,
        prefix=["198.51.100.0/24"],
        sensor_id="sim-day",
    )
    batches = list(sim)
    sim.write_ground_truth(tmp / "truth.json")
    return batches, json.loads((tmp / "truth.json").read_text())


def _counted(bootstrap: str, topics: TopicNames, pool: WorkerPool, batches: int, tmp: Path) -> dict:
    """The settled windows once every batch is enriched and the day's 24 hours are closed."""

    def drained() -> bool:
        hours = [k for k in windows(bootstrap, pool.app_id) if k[0] == "sensor" and k[1] == "1h"]
        return len(set(_enriched(bootstrap, topics.enriched))) >= batches and len(hours) >= 24

    def seen() -> str:
        done = set(_enriched(bootstrap, topics.enriched))
        sent = {
            (p, o) for p, (lo, hi) in watermarks(bootstrap, topics.packets).items() for o in range(lo, hi)
        }
        missing = sorted(sent - done)
        return (
            f"enriched {len(done)} of {batches} batches (missing [partition, offset]: {missing[:20]}); "
            f"hours closed per kind: {hours_closed(windows(bootstrap, pool.app_id))} of 24"
        )

    wait_for("the day to be counted", drained, 180, tmp, seen)
    return settled_windows(bootstrap, pool.app_id, tmp)


def _assert_exact(wins: dict, truth: dict[str, Any], raised: list[dict[str, Any]]) -> None:
    expected = truth["totals"]["packets"]
    assert hourly_totals(wins, "sensor") == {"sim-day": expected}
    assert hourly_totals(wins, "region") == truth["totals"]["by_region"]
    assert _sum_fp(wins, "mirai") == truth["totals"]["by_fingerprint"]["mirai"]
    # Minute windows too (each hour's minutes are one table value, rewritten by a new owner).
    minutes = sum(
        p for (k, size, _), c in wins.items() if k == "sensor" and size == "1m" for p, _ in c.values()
    )
    assert minutes == expected
    ids = [record_key(a) for a in raised]  # an episode's open and close share its alert id
    assert len(ids) == len(set(ids)), "a window closed again after a takeover raised its alert twice"


def test_counts_stay_exact_when_partitions_move(
    kafka_bootstrap: str, topic_names: TopicNames, tmp_path: Path
) -> None:
    # Two hours of retention, so that windows become final during the day and a new owner
    # starts from a replay point in the middle of its counts partition.
    env = {
        "DARKSCOPE_WORKER_RETENTION": "7200",
        "DARKSCOPE_WORKER_IDLE_AFTER": "6",
        "DARKSCOPE_WORKER_SESSION_TIMEOUT": "8",
    }
    pool = WorkerPool(kafka_bootstrap, topic_names, tmp_path, **env)
    batches, truth = _day(tmp_path, 40_000, 11)
    pub = Publisher(kafka_bootstrap)
    third = len(batches) // 3
    try:
        pool.start()
        wait_for("the first worker", lambda: "Ready" in pool.log(0), 120, tmp_path)
        _send(pub, topic_names.packets, batches[:third], 0.2)
        # A second worker joins while packets flow: some counts partitions move to it.
        pool.start()
        sent = third
        while "took over" not in pool.log(1) and sent < 2 * third:
            _send(pub, topic_names.packets, batches[sent : sent + 1], 0.5)
            sent += 1
        wait_for("the second worker to take counts over", lambda: "took over" in pool.log(1), 120, tmp_path)
        # The first worker stops while packets flow: the second one takes everything.
        stopper = threading.Thread(target=pool.stop, args=(0,))
        stopper.start()
        _send(pub, topic_names.packets, batches[sent:], 0.2)
        stopper.join()
        wins = _counted(kafka_bootstrap, topic_names, pool, len(batches), tmp_path)
        raised = alerts(kafka_bootstrap, topic_names.alerts)
        enriched = _enriched(kafka_bootstrap, topic_names.enriched)
    finally:
        pool.close()
    logs = pool.log(0) + pool.log(1)
    rereads = [int(n) for n in re.findall(r"re-read (\d+) partials", logs)]
    assert rereads and max(rereads) > 0, "a new owner should have re-read partials"
    assert len(set(enriched)) == len(batches)  # some may be there twice: the sink drops repeats
    _assert_exact(wins, truth, raised)


def test_counts_stay_exact_when_a_worker_is_killed(
    kafka_bootstrap: str, topic_names: TopicNames, tmp_path: Path
) -> None:
    env = {
        "DARKSCOPE_WORKER_RETENTION": "7200",
        "DARKSCOPE_WORKER_IDLE_AFTER": "6",
        "DARKSCOPE_WORKER_SESSION_TIMEOUT": "8",
    }
    pool = WorkerPool(kafka_bootstrap, topic_names, tmp_path, **env)
    batches, truth = _day(tmp_path, 30_000, 12)
    pub = Publisher(kafka_bootstrap)
    half = len(batches) // 2
    try:
        pool.start()
        wait_for("the first worker", lambda: "Ready" in pool.log(0), 120, tmp_path)
        _send(pub, topic_names.packets, batches[:half], 0.2)
        # Killed in mid-stream: no commit, no flush; its uncommitted batches are read again.
        pool.kill(0)
        pool.start()
        _send(pub, topic_names.packets, batches[half:], 0.2)
        wins = _counted(kafka_bootstrap, topic_names, pool, len(batches), tmp_path)
        raised = alerts(kafka_bootstrap, topic_names.alerts)
    finally:
        pool.close()
    assert "took over" in pool.log(1)
    _assert_exact(wins, truth, raised)
