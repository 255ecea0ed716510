"""Run real `darkscope worker` processes against test topics, and read what they wrote."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from darkscope.settings import TopicNames
from schemas.codec import Codec
from tests.kafka_helpers import read_all

REPO = Path(__file__).resolve().parents[2]


def worker_env(
    bootstrap: str, topics: TopicNames, app_id: str, data_dir: Path, **extra: str
) -> dict[str, str]:
    """Environment of a worker process for these topics."""
    env = {
        **os.environ,
        "DARKSCOPE_BOOTSTRAP": bootstrap,
        "DARKSCOPE_PARTITIONS": "4",
        "DARKSCOPE_WORKER_APP_ID": app_id,
        "DARKSCOPE_WORKER_DATA_DIR": str(data_dir),
        "DARKSCOPE_WORKER_IDLE_AFTER": "3",
        "DARKSCOPE_WORKER_ALERT_MIN_HISTORY": "4",
    }
    for field in TopicNames.model_fields:
        env[f"DARKSCOPE_TOPIC_{field.upper()}"] = getattr(topics, field)
    env.update(extra)
    return env


@contextmanager
def workers(n: int, bootstrap: str, topics: TopicNames, tmp: Path, **extra: str) -> Iterator[str]:
    """Start ``n`` worker processes of one new app id; stop them afterwards. Yields the app id."""
    app_id = f"ds-test-{uuid.uuid4().hex[:8]}"
    procs = []
    logs = []
    try:
        for i in range(n):
            log = (tmp / f"worker{i}.log").open("wb")
            logs.append(log)
            env = worker_env(bootstrap, topics, app_id, tmp / f"w{i}", **extra)
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "darkscope", "worker"],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=REPO,
                )
            )
        yield app_id
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        for log in logs:
            log.close()


def wait_for(what: str, predicate: Callable[[], bool], timeout: float, tmp: Path) -> None:
    """Poll until ``predicate()``; on timeout fail with the workers' logs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(1.0)
    logs = "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(tmp.glob("worker*.log")))
    raise AssertionError(f"timed out waiting for {what}\n{logs}")


def enriched_packets(bootstrap: str, topic: str) -> int:
    """Packets in the enriched topic so far."""
    codec = Codec()
    return sum(
        int(codec.decode(m.value() or b"").record["packets"]["count"]) for m in read_all(bootstrap, topic)
    )


def windows(bootstrap: str, app_id: str) -> dict[tuple[str, str, int], dict[str, list[int]]]:
    """Closed windows from the window_counts table's changelog: (kind, size, start) -> counts."""
    out = {}
    try:
        msgs = list(read_all(bootstrap, f"{app_id}-window_counts-changelog"))
    except Exception:  # noqa: BLE001 - the changelog topic appears with the first window
        return {}
    for m in msgs:
        kind, size, _ = (m.key() or b"").decode().split("|")
        w = orjson.loads(m.value() or b"{}")
        # An hour window stands alone; minute windows come as the closed minutes of an hour.
        for one in w["minutes"] if size == "1m" else [w]:
            out[(kind, size, int(one["start"]))] = {
                v: [p, s] for v, p, s in zip(one["values"], one["packets"], one["sources"], strict=True)
            }
    return out


def alerts(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """Every alert on the topic, decoded."""
    codec = Codec()
    return [codec.decode(m.value() or b"").record for m in read_all(bootstrap, topic)]


def hourly_totals(wins: dict[tuple[str, str, int], dict[str, list[int]]], kind: str) -> dict[str, int]:
    """Packets per value summed over the 1-hour windows of a kind."""
    totals: dict[str, int] = {}
    for (k, size, _), counts in wins.items():
        if k == kind and size == "1h":
            for value, (packets, _) in counts.items():
                totals[value] = totals.get(value, 0) + packets
    return totals


def settled_windows(
    bootstrap: str, app_id: str, tmp: Path, timeout: float = 60.0
) -> dict[tuple[str, str, int], dict[str, list[int]]]:
    """The closed windows once two reads 3 s apart agree (late corrections have landed)."""
    last = windows(bootstrap, app_id)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(3)
        now = windows(bootstrap, app_id)
        if now == last:
            return now
        last = now
    raise AssertionError(f"windows of {app_id} still changing after {timeout:.0f} s")
