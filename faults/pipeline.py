"""One scenario's pipeline as real processes: the suite's own broker (never the shared one),
this scenario's topics, a paced sensor, one worker, one sink into a chDB store.

Processes are started with ``python -m ...`` and logged to ``<root>/<name>.log`` (appended
across restarts); kill and restart act only on the processes this object started, and on the
broker whose pid file is in the suite's own data folder.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from core import broker as broker_mod
from core.settings import BrokerSettings, KafkaSettings, TopicNames
from core.topics import admin_client, ensure_topics

__all__ = ["Pipeline", "REPO", "gone", "kill_broker", "start_broker", "wait_until"]

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
PARTITIONS = 4


def wait_until(what: str, predicate: Callable[[], bool], timeout: float, every: float = 1.0) -> float:
    """Poll ``predicate`` until it holds; returns the seconds it took (TimeoutError after ``timeout``)."""
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(every)
    return time.monotonic() - t0


def kill_broker(settings: BrokerSettings | None) -> None:
    """SIGKILL the suite's broker (the pid in its own data folder) and wait until it is gone."""
    if settings is None:
        raise RuntimeError("this pipeline runs on a broker it does not own: it never kills it")
    pid_file = settings.data_dir / "broker.pid"
    pid = int(pid_file.read_text().strip())
    os.kill(pid, signal.SIGKILL)
    wait_until("the broker to die", lambda: gone(pid), 30, 0.1)


def gone(pid: int) -> bool:
    """Has process ``pid`` exited? A child of this process (the broker that core.broker started
    from here) is reaped: until then it is a zombie and its /proc entry stays."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return True
    except ChildProcessError:
        pass  # not our child
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state == "Z"


class Pipeline:
    """A sensor, a worker and a sink on fresh topics of the suite's broker."""

    def __init__(self, root: Path, broker: BrokerSettings | str, name: str, **env: str) -> None:
        """Topics, groups, store and logs of scenario ``name`` under ``root`` on ``broker`` (the
        suite's own, or a bootstrap address: a broker this pipeline never kills); nothing runs yet."""
        self.root = root / name
        self.root.mkdir(parents=True, exist_ok=True)
        self.broker = broker if isinstance(broker, BrokerSettings) else None
        self.bootstrap = broker if isinstance(broker, str) else f"127.0.0.1:{broker.port}"
        run = f"{name}-{uuid.uuid4().hex[:6]}"
        self.topics = TopicNames.model_validate({f: f"faults.{run}.{f}" for f in TopicNames.model_fields})
        self.app_id = f"faults-{run}"
        self.sink_group = f"faults-sink-{run}"
        self.store_dir = self.root / "store"
        self.truth = self.root / "truth.json"
        self.env = {
            **os.environ,
            "DARKSCOPE_BOOTSTRAP": self.bootstrap,
            "DARKSCOPE_PARTITIONS": str(PARTITIONS),
            "DARKSCOPE_WORKER_APP_ID": self.app_id,
            "DARKSCOPE_WORKER_DATA_DIR": str(self.root / "worker"),
            "DARKSCOPE_WORKER_IDLE_AFTER": "4",
            "DARKSCOPE_WORKER_SESSION_TIMEOUT": "10",
            "DARKSCOPE_SINK_DSN": f"chdb://{self.store_dir}",
            "DARKSCOPE_SINK_GROUP_ID": self.sink_group,
            "DARKSCOPE_SINK_MAX_BACKOFF": "2",
            **{f"DARKSCOPE_TOPIC_{f.upper()}": getattr(self.topics, f) for f in TopicNames.model_fields},
            **env,
        }
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        ensure_topics(KafkaSettings(bootstrap=self.bootstrap, partitions=PARTITIONS), self.topics.all())

    def spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        """Start ``python args...`` as process ``name`` (replacing a dead one of that name)."""
        old = self.procs.get(name)
        if old is not None and old.poll() is None:
            raise RuntimeError(f"{name} is still running")
        with (self.root / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, *args], env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO
            )
        self.procs[name] = proc
        return proc

    def start_worker(self) -> None:
        """``darkscope worker``."""
        self.spawn("worker", ["-m", "darkscope", "worker"])

    def start_sink(self) -> None:
        """``darkscope sink``."""
        self.spawn("sink", ["-m", "darkscope", "sink"])

    def start_sensor(self, days: int, packets_per_day: int, rate: float, seed: int = 0) -> None:
        """The paced simulated sensor (:mod:`faults.sensor`)."""
        self.spawn(
            "sensor",
            [
                "-m",
                "faults.sensor",
                f"--days={days}",
                f"--packets-per-day={packets_per_day}",
                f"--rate={rate}",
                f"--seed={seed}",
                f"--truth={self.truth}",
            ],
        )

    def log(self, name: str) -> str:
        """What process ``name`` logged so far (every run of it)."""
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def pid(self, name: str) -> int:
        """The pid of process ``name``."""
        return self.procs[name].pid

    def alive(self, name: str) -> bool:
        """Is process ``name`` running?"""
        proc = self.procs.get(name)
        return proc is not None and proc.poll() is None

    def kill(self, name: str) -> None:
        """SIGKILL process ``name``: no commit, no flush."""
        proc = self.procs[name]
        proc.kill()
        proc.wait()

    def stop(self, name: str, timeout: float = 60.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        proc = self.procs.get(name)
        if proc is None:
            return None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def close(self) -> None:
        """Stop every process this pipeline started."""
        for name in list(self.procs):
            self.stop(name, 30)

    def drop_topics(self) -> None:
        """Delete this pipeline's topics and its worker's internal ones (on a shared broker)."""
        admin = admin_client(self.bootstrap)
        names = [
            t
            for t in admin.list_topics(timeout=10).topics
            if t in self.topics.all() or t.startswith(f"{self.app_id}-")
        ]
        for fut in admin.delete_topics(names).values() if names else ():
            fut.result()


def start_broker(settings: BrokerSettings) -> float:
    """Start the suite's broker; returns the seconds it took."""
    t0 = time.monotonic()
    broker_mod.start(settings)
    return time.monotonic() - t0
