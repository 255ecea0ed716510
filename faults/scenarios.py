"""The fault scenarios, one at a time on a fresh pipeline: start it, let packets flow, inject
the fault, measure how long until everything sent before the fault's end is stored, let the
stretch finish, stop the pipeline and check (:mod:`faults.check`)."""

from __future__ import annotations

import json
import logging
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core.publisher import Publisher
from core.settings import BrokerSettings
from core.topics import committed
from faults import observe
from faults.check import Verdict, compare
from faults.pipeline import Pipeline, gone, kill_broker, start_broker, wait_until
from sinks.intents import resumed_intent
from sinks.store import Store

__all__ = ["SCENARIOS", "Scale", "run_scenario"]

logger = logging.getLogger(__name__)

# Messages no reader can decode, published on the packets topic before each scenario: the
# worker must dead-letter each with its reason whatever the fault does.
GARBAGE = [b"\x00not avro at all", b"\xc3\x01" + b"\xff" * 40]


@dataclass(frozen=True)
class Scale:
    """How much traffic a scenario replays, how fast, and how long a fault lasts."""

    days: int = 2
    packets_per_day: int = 20_000
    rate: float = 4.0  # packet batches (500 packets) a second
    outage_s: float = 60.0  # the store's outage
    timeout_s: float = 420.0


Inject = Callable[[Pipeline, Scale], str]  # does the fault, returns a note; returns when it has ended


def _broker_killed(p: Pipeline, scale: Scale) -> str:
    kill_broker(p.broker)
    time.sleep(5)
    assert p.broker is not None
    took = start_broker(p.broker)
    return f"broker back in {took:.0f} s"


def _worker_killed(p: Pipeline, scale: Scale) -> str:
    p.kill("worker")
    p.start_worker()
    return "worker restarted at once"


def _intent_pending(p: Pipeline) -> bool:
    """Has the sink committed a group's intent and not yet its end offset (insert in hand)?"""
    tps = committed(p.bootstrap, p.sink_group, p.topics.enriched)
    return any(resumed_intent(tp) is not None for tp in tps)


def _sink_killed(p: Pipeline, scale: Scale) -> str:
    # The sink commits a group's intent, inserts, then commits the end offset: SIGKILL it while
    # an intent is the committed state (insert in hand or done, end offset not committed).
    waited = wait_until("a sink intent in hand", lambda: _intent_pending(p), 120, 0.02)
    p.kill("sink")
    p.start_sink()
    return f"killed with an intent committed (after {waited:.0f} s)"


def _store_unavailable(p: Pipeline, scale: Scale) -> str:
    # chDB runs in the sink's process, and root ignores file modes: a read-only bind mount over
    # the store folder makes every write fail (EROFS) while the sink keeps it open.
    path = str(p.store_dir)
    subprocess.run(["mount", "--bind", path, path], check=True)
    subprocess.run(["mount", "-o", "remount,bind,ro", path], check=True)
    try:
        time.sleep(scale.outage_s)
    finally:
        subprocess.run(["umount", path], check=True)
    retries = p.log("sink").count("retrying in")
    return f"store read-only for {scale.outage_s:.0f} s; sink logged {retries} retries"


def _disk_full(p: Pipeline, scale: Scale) -> str:
    # The broker's data folder is a small tmpfs (faults.run): fill it, wait for the broker to
    # fail or for 20 s, then free the space and restart the broker if it died.
    assert p.broker is not None
    ballast = p.broker.data_dir / "ballast"
    with ballast.open("wb") as f:
        try:
            while True:
                f.write(b"\0" * (1 << 20))
                f.flush()
        except OSError:
            pass
    pid = int((p.broker.data_dir / "broker.pid").read_text())
    try:
        wait_until("the broker to fail on a full disk", lambda: gone(pid), 20)
        died = True
    except TimeoutError:
        died = False
    ballast.unlink()
    if died:
        took = start_broker(p.broker)
        return f"broker stopped on the full disk; restarted in {took:.0f} s once freed"
    return "broker stayed up on the full disk (20 s), space freed"


SCENARIOS: dict[str, Inject] = {
    "broker SIGKILLed, restarted": _broker_killed,
    "worker SIGKILLed, restarted": _worker_killed,
    "sink SIGKILLed insert..commit": _sink_killed,
    "store read-only 60 s": _store_unavailable,
    "broker disk full, freed": _disk_full,
}


def _drained(p: Pipeline) -> bool:
    sent = set(observe.sent_batches(p.bootstrap, p.topics.packets))
    return bool(sent) and sent <= observe.sink_stored_batches(p.bootstrap, p.sink_group, p.topics.enriched)


def _windows_total(p: Pipeline) -> int:
    return sum(observe.window_cells(p.bootstrap, p.app_id).values())


def _windows_settle(p: Pipeline, sent: int, quiet_s: float = 30.0, timeout_s: float = 240.0) -> bool:
    """Wait until the windows count ``sent`` packets and stay so 5 s (late corrections landed),
    or stop changing for ``quiet_s``; True when they reached ``sent``."""
    last, changed, t0 = -1, time.monotonic(), time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        now = _windows_total(p)
        if now != last:
            last, changed = now, time.monotonic()
        elif now >= sent and time.monotonic() - changed >= 5:
            return True
        elif time.monotonic() - changed >= quiet_s:
            return False
        time.sleep(2.5)
    return last >= sent


def run_scenario(
    name: str, root: Path, broker: BrokerSettings | str, scale: Scale, drop_topics: bool = False
) -> Verdict:
    """Run scenario ``name`` on a fresh pipeline and check it. ``broker`` is the suite's own
    (the broker scenarios kill it), or the bootstrap address of one to leave alone."""
    slug = "".join(c if c.isalnum() else "-" for c in name.split(",", maxsplit=1)[0]).strip("-")
    p = Pipeline(root, broker, slug)
    recovered: float | None = None
    note = ""
    try:
        p.start_worker()
        p.start_sink()
        wait_until("the worker to be ready", lambda: "Ready" in p.log("worker"), 180)
        pub = Publisher(p.bootstrap)
        for frame in GARBAGE:
            pub.send(p.topics.packets, frame, packets=0)
        pub.flush()
        p.start_sensor(scale.days, scale.packets_per_day, scale.rate)
        total = scale.days * scale.packets_per_day // 500
        wait_until(
            "a third of the stretch sent",
            lambda: len(observe.sent_batches(p.bootstrap, p.topics.packets)) >= total // 3,
            180,
        )
        note = SCENARIOS[name](p, scale)
        ended = time.monotonic()
        before = set(observe.sent_batches(p.bootstrap, p.topics.packets))
        try:
            wait_until(
                "every batch sent before the fault's end stored",
                lambda: before <= observe.sink_stored_batches(p.bootstrap, p.sink_group, p.topics.enriched),
                scale.timeout_s,
            )
            recovered = time.monotonic() - ended
        except TimeoutError as exc:
            note += f"; {exc}"
        wait_until("the sensor to finish", lambda: not p.alive("sensor"), scale.timeout_s)
        if p.procs["sensor"].returncode:
            note += f"; sensor exited with {p.procs['sensor'].returncode}"
        wait_until("the sink to store every batch", lambda: _drained(p), scale.timeout_s)
        # The last hours close once the worker marks the quiet partitions idle.
        sent_packets = int(json.loads(p.truth.read_text())["totals"]["packets"])
        if not _windows_settle(p, sent_packets):
            note += "; the windows stopped short of the packets sent"
        for proc in ("worker", "sink"):
            if p.stop(proc):
                note += f"; {proc} exited with {p.procs[proc].returncode}"
    except TimeoutError as exc:
        note += f"; {exc}"
    finally:
        p.close()
    with Store.open(f"chdb://{p.store_dir}") as store:
        stored = observe.store_cells(store)
    verdict = compare(
        name,
        recovered,
        p.truth,
        stored,
        observe.window_cells(p.bootstrap, p.app_id),
        observe.alert_keys(p.bootstrap, p.topics.alerts),
        observe.dead_letters(p.bootstrap, p.topics.deadletter),
        GARBAGE,
        note.lstrip("; "),
    )
    if drop_topics:
        p.drop_topics()
    return verdict
