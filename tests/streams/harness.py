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

from core.settings import TopicNames
from core.topics import admin_client
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


class WorkerPool:
    """Worker processes of one app id, started and stopped one by one."""

    def __init__(self, bootstrap: str, topics: TopicNames, tmp: Path, **extra: str) -> None:
        """No worker runs yet; the app id is new."""
        self.app_id = f"ds-test-{uuid.uuid4().hex[:8]}"
        self.bootstrap, self.topics, self.tmp, self.extra = bootstrap, topics, tmp, extra
        self.procs: list[subprocess.Popen[bytes]] = []
        self._logs: list[Any] = []

    def start(self) -> int:
        """Start one more worker; returns its number (its log is ``worker<n>.log``)."""
        i = len(self.procs)
        log = (self.tmp / f"worker{i}.log").open("wb")
        self._logs.append(log)
        env = worker_env(self.bootstrap, self.topics, self.app_id, self.tmp / f"w{i}", **self.extra)
        self.procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "darkscope", "worker"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )
        )
        return i

    def log(self, i: int) -> str:
        """What worker ``i`` logged so far."""
        return (self.tmp / f"worker{i}.log").read_text(errors="replace")

    def stop(self, i: int) -> None:
        """Stop worker ``i`` the way an orchestrator does (SIGTERM, then SIGKILL after 30 s)."""
        p = self.procs[i]
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def kill(self, i: int) -> None:
        """Kill worker ``i`` (SIGKILL: no commit, no flush, nothing)."""
        self.procs[i].kill()
        self.procs[i].wait()

    def close(self) -> None:
        """Stop every worker and close the logs."""
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for i in range(len(self.procs)):
            self.stop(i)
        for log in self._logs:
            log.close()


@contextmanager
def workers(n: int, bootstrap: str, topics: TopicNames, tmp: Path, **extra: str) -> Iterator[str]:
    """Start ``n`` worker processes of one new app id; stop them afterwards. Yields the app id."""
    pool = WorkerPool(bootstrap, topics, tmp, **extra)
    try:
        for _ in range(n):
            pool.start()
        yield pool.app_id
    finally:
        pool.close()


def wait_for(
    what: str,
    predicate: Callable[[], bool],
    timeout: float,
    tmp: Path,
    seen: Callable[[], str] | None = None,
) -> None:
    """Poll until ``predicate()``; on timeout fail with what ``seen()`` says was last seen
    (what is missing, not only that something is), then the workers' last log lines."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(1.0)
    last = seen() if seen is not None else "(nothing to say)"
    logs = "\n".join(
        f"--- {p.name}\n" + p.read_text(errors="replace")[-3000:] for p in sorted(tmp.glob("worker*.log"))
    )
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last seen: {last}\n{logs}")


def enriched_packets(bootstrap: str, topic: str) -> int:
    """Packets in the enriched topic so far."""
    codec = Codec()
    return sum(
        int(codec.decode(m.value() or b"").record["packets"]["count"]) for m in read_all(bootstrap, topic)
    )


def windows(bootstrap: str, app_id: str) -> dict[tuple[str, str, int], dict[str, list[int]]]:
    """Closed windows from the window_counts table's changelog: (kind, size, start) -> counts."""
    out: dict[tuple[str, str, int], dict[str, list[int]]] = {}
    topic = f"{app_id}-window_counts-changelog"
    if topic not in topic_names(bootstrap):
        return out  # the changelog topic appears with the first window
    for m in read_all(bootstrap, topic):
        parts = (m.key() or b"").decode().split("|")
        if len(parts) != 3 or m.value() is None:
            continue  # a kind's replay point (streams.takeover), or a window that left the table
        kind, size, _ = parts
        w = orjson.loads(m.value() or b"{}")
        # An hour window stands alone; minute windows come as the closed minutes of an hour.
        for one in w["minutes"] if size == "1m" else [w]:
            out[(kind, size, int(one["start"]))] = {
                v: [p, s] for v, p, s in zip(one["values"], one["packets"], one["sources"], strict=True)
            }
    return out


def topic_names(bootstrap: str) -> set[str]:
    """Topics the broker has now."""
    return set(admin_client(bootstrap).list_topics(timeout=10).topics)


def hours_closed(wins: dict[tuple[str, str, int], dict[str, list[int]]]) -> dict[str, int]:
    """Hour windows stored per kind (for what a test last saw)."""
    out: dict[str, int] = {}
    for kind, size, _ in wins:
        if size == "1h":
            out[kind] = out.get(kind, 0) + 1
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
