"""The ``darkscope`` command line: one click group wiring settings to the packages."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from core.errors import DarkscopeError
from core.settings import (
    BrokerSettings,
    KafkaSettings,
    SensorSettings,
    SinkSettings,
    TopicNames,
    WorkerSettings,
)
from darkscope import __version__

F = TypeVar("F", bound=Callable[..., Any])


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(
        level=max(level, logging.DEBUG), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


class _Group(click.Group):
    """Turns DarkscopeError into a clear one-line CLI error instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DarkscopeError as exc:
            raise click.ClickException(f"{type(exc).__name__}: {exc}") from exc


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="darkscope")
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def main(verbose: int) -> None:
    """darkscope: darknet (network telescope) threat monitoring.

    Settings come from DARKSCOPE_* environment variables (see README.md, "Settings").
    """
    _setup_logging(verbose)


# -- broker ----------------------------------------------------------------------------------


@main.group()
def broker() -> None:
    """Run a local single-node Kafka broker (KRaft) from the pinned Maven jars."""


@broker.command("fetch")
def broker_fetch() -> None:
    """Fetch the pinned broker jars with Maven (done by `up` when needed)."""
    from core.broker import ensure_jars

    click.echo(f"jars in {ensure_jars(BrokerSettings())}")


@broker.command("up")
@click.option(
    "--topics/--no-topics",
    default=True,
    show_default=True,
    help="Create the darkscope topics once the broker answers.",
)
def broker_up(topics: bool) -> None:
    """Start the broker unless one is running, and create the darkscope topics."""
    import time

    from core import broker as b
    from core.topics import ensure_topics

    settings = BrokerSettings()
    t0 = time.monotonic()
    status, started = b.start(settings)
    if started:
        click.echo(
            f"broker started on {status.bootstrap} in {time.monotonic() - t0:.1f} s "
            f"(pid {status.pid}, log {status.log_file})"
        )
    else:
        click.echo(f"broker already running on {status.bootstrap} (pid {status.pid}); nothing done")
    if topics:
        kafka = KafkaSettings(bootstrap=status.bootstrap)
        for t in ensure_topics(kafka):
            click.echo(f"  topic {t.name}: {t.partitions} partitions")


@broker.command("status")
def broker_status() -> None:
    """Say whether the broker runs and answers metadata requests (exit 1 when not)."""
    from core import broker as b

    st = b.broker_status(BrokerSettings())
    rss = f", RSS {st.rss_bytes / 2**20:.0f} MiB" if st.rss_bytes else ""
    if st.answering:
        click.echo(f"broker running on {st.bootstrap} (pid {st.pid}{rss}); log {st.log_file}")
    elif st.running:
        click.echo(f"broker process {st.pid} is alive but does not answer on {st.bootstrap}")
        sys.exit(1)
    else:
        click.echo(f"no broker running on {st.bootstrap}")
        sys.exit(1)


@broker.command("down")
def broker_down() -> None:
    """Stop the broker cleanly."""
    from core import broker as b

    if b.stop(BrokerSettings()):
        click.echo("broker stopped")
    else:
        click.echo("no broker was running")


# -- topics ----------------------------------------------------------------------------------


@main.group()
def topics() -> None:
    """Create and list darkscope's Kafka topics."""


@topics.command("create")
@click.option("--partitions", type=int, default=None, help="Partitions (default DARKSCOPE_PARTITIONS).")
def topics_create(partitions: int | None) -> None:
    """Create the darkscope topics that are missing."""
    from core.topics import ensure_topics

    for t in ensure_topics(KafkaSettings(), partitions=partitions):
        click.echo(f"{t.name}\t{t.partitions}")


@topics.command("list")
def topics_list() -> None:
    """List the topics on the cluster with their partition counts."""
    from core.topics import list_topics

    for t in list_topics(KafkaSettings().bootstrap):
        click.echo(f"{t.name}\t{t.partitions}")


# -- sensors and the simulator --------------------------------------------------------------


@main.command()
@click.option(
    "--pcap",
    "pcaps",
    multiple=True,
    type=str,
    help="Capture file to replay (pcap/pcapng, gzip ok; - for stdin).",
)
@click.option("--iface", type=str, default=None, help="Interface to capture from (libpcap).")
@click.option("--bpf", type=str, default="", help="BPF filter for --iface.")
@click.option(
    "--realtime", is_flag=True, help="Replay files at capture speed instead of as fast as possible."
)
@click.option("--sensor-id", type=str, default=None, help="Override DARKSCOPE_SENSOR_SENSOR_ID.")
@click.option(
    "--prefix", "prefixes", multiple=True, help="Monitored prefix (repeatable); overrides settings."
)
def sensor(
    pcaps: tuple[str, ...],
    iface: str | None,
    bpf: str,
    realtime: bool,
    sensor_id: str | None,
    prefixes: tuple[str, ...],
) -> None:
    """Capture packets (files or an interface) and publish them to Kafka."""
    from producers.run import replay_files, sniff_interface

    if bool(pcaps) == bool(iface):
        raise click.UsageError("give either --pcap FILE... or --iface IFACE")
    overrides: dict[str, Any] = {}
    if sensor_id:
        overrides["sensor_id"] = sensor_id
    if prefixes:
        overrides["prefixes"] = list(prefixes)
    settings = SensorSettings(**overrides)
    if pcaps:
        reports = replay_files(list(pcaps), settings, KafkaSettings(), TopicNames(), realtime)
    else:
        assert iface is not None
        reports = [sniff_interface(iface, bpf, settings, KafkaSettings(), TopicNames())]
    for report in reports:
        for line in report.lines():
            click.echo(line)
    if any(r.send_failed for r in reports):
        sys.exit(1)


@main.command()
@click.option("--quarter", default="2022Q2", show_default=True, help="Quarter to simulate, e.g. 2022Q2.")
@click.option("--packets-per-day", type=int, default=100_000, show_default=True, help="Volume.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Write capture files and ground-truth JSON here.",
)
@click.option("--kafka", "to_kafka", is_flag=True, help="Publish to Kafka instead of writing captures.")
@click.option("--format", "fmt", type=click.Choice(["pcap", "pcapng"]), default="pcap", show_default=True)
@click.option(
    "--previous", is_flag=True, help="Also simulate the quarter before (for previous-quarter ranks)."
)
@click.option("--days", type=int, default=None, help="Only the first N days.")
@click.option("--flat", is_flag=True, help="A control quarter: same volumes, no planted events.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--prefix", "prefixes", multiple=True, help="Sensor prefix (repeatable); default 198.51.100.0/24."
)
@click.option("--sensor-id", default="sim-0", show_default=True)
def simulate(
    quarter: str,
    packets_per_day: int,
    out_dir: Path | None,
    to_kafka: bool,
    fmt: str,
    previous: bool,
    days: int | None,
    flat: bool,
    seed: int,
    prefixes: tuple[str, ...],
    sensor_id: str,
) -> None:
    """Simulate a quarter of darknet traffic: capture files, or straight to Kafka."""
    prefix_list = list(prefixes) or ["198.51.100.0/24"]
    if to_kafka:
        from producers.run import publish_simulation
        from producers.sim.model import VolumePlan

        quarters = [quarter]
        if previous:
            prev = VolumePlan(quarter, packets_per_day).model.previous
            if prev is None:
                raise click.UsageError(f"no model for the quarter before {quarter}")
            quarters.insert(0, prev)
        settings = SensorSettings(sensor_id=sensor_id, prefixes=prefix_list)
        for q in quarters:
            truth = out_dir / q / "ground-truth.json" if out_dir else None
            if truth:
                truth.parent.mkdir(parents=True, exist_ok=True)
            report, _ = publish_simulation(
                settings,
                KafkaSettings(),
                TopicNames(),
                quarter=q,
                packets_per_day=packets_per_day,
                days=days,
                flat=flat,
                seed=seed,
                truth_path=truth,
            )
            for line in report.lines():
                click.echo(line)
            if truth:
                click.echo(f"  ground truth: {truth}")
        return
    if out_dir is None:
        raise click.UsageError("give --out DIR (capture files) or --kafka")
    from producers.sim.simulate import run_simulation

    result = run_simulation(
        out_dir,
        quarter=quarter,
        packets_per_day=packets_per_day,
        fmt=fmt,  # type: ignore[arg-type]
        previous=previous,
        days=days,
        flat=flat,
        seed=seed,
        prefix=prefix_list,
        sensor_id=sensor_id,
    )
    click.echo(
        f"simulated {result.packets} packets in {len(result.captures)} files in {result.seconds:.1f} s"
    )
    for truth in result.truths:
        click.echo(f"  ground truth: {truth}")


# -- stream workers -----------------------------------------------------------------------


@main.command()
@click.option(
    "--loglevel",
    type=click.Choice(["crit", "error", "warn", "info", "debug"]),
    default="info",
    show_default=True,
    help="Faust log level.",
)
def worker(loglevel: str) -> None:
    """Run a stream worker: enrichment, windowed counts, alerts (Faust app)."""
    from streams.worker import run_worker

    run_worker(WorkerSettings(), KafkaSettings(), TopicNames(), loglevel)


@main.group()
def alerts() -> None:
    """Read real-time alerts."""


@alerts.command("tail")
@click.option("--from-beginning", is_flag=True, help="Start at the oldest alert, not the newest.")
@click.option("--max", "limit", type=int, default=0, help="Stop after this many alerts (0: never).")
@click.option("--timeout", type=float, default=0.0, help="Stop after this many idle seconds (0: never).")
def alerts_tail(from_beginning: bool, limit: int, timeout: float) -> None:
    """Print alerts from darkscope.alerts as they arrive, one readable line each."""
    from streams.alert_reader import tail_alerts

    for line in tail_alerts(KafkaSettings().bootstrap, TopicNames().alerts, from_beginning, limit, timeout):
        click.echo(line)


# -- ClickHouse sink and SQL -----------------------------------------------------------------


@main.command()
@click.option(
    "--exit-when-idle",
    type=float,
    default=None,
    help="Stop once no message has come for this many seconds (one-off loads).",
)
def sink(exit_when_idle: float | None) -> None:
    """Store enriched batches and sensor health from Kafka in ClickHouse (DARKSCOPE_SINK_DSN)."""
    from sinks.run import run_sink

    stats = run_sink(SinkSettings(), KafkaSettings(), TopicNames(), exit_when_idle)
    click.echo(
        f"stored {stats.rows} packets from {stats.batches} batches in {stats.inserts} inserts; "
        f"{stats.health} sensor health records, {stats.dead} dead letters, {stats.retries} retries"
    )


@main.command()
@click.argument("query")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
    help="Output format.",
)
@click.option("--dsn", default=None, help="Store to query (default DARKSCOPE_SINK_DSN).")
def sql(query: str, fmt: str, dsn: str | None) -> None:
    """Run a SQL query against the ClickHouse store and print the answer."""
    from sinks.sql import render_csv, render_json, render_table, run_sql

    settings = SinkSettings()
    password = settings.password.get_secret_value() if settings.password else None
    answer = run_sql(dsn or settings.dsn, query, password)
    if fmt == "csv":
        click.echo(render_csv(answer), nl=False)
    elif fmt == "json":
        click.echo(render_json(answer))
    else:
        from rich.console import Console

        console = Console()
        if not console.is_terminal:  # piped: never cut columns to 80 characters
            console = Console(width=1000)
        console.print(render_table(answer))


# -- report ----------------------------------------------------------------------------------


@main.command()
@click.option("--quarter", required=True, help="Quarter to report, written like 2022Q2.")
@click.option("--sensor", default=None, help="Only this sensor's packets (default: all sensors).")
@click.option("--focus-region", default=None, help="Region of Figure 6 [env DARKSCOPE_REPORT_FOCUS_REGION].")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder [env DARKSCOPE_REPORT_OUT_DIR].",
)
def report(quarter: str, sensor: str | None, focus_region: str | None, out_dir: Path | None) -> None:
    """Write the quarterly report (HTML with inline charts, and JSON) from the ClickHouse store."""
    from core.settings import ReportSettings, SinkSettings
    from reports.build import write_report
    from reports.changes import ChangeParams
    from reports.events import EventParams
    from sinks.store import Store

    rs, sink = ReportSettings(), SinkSettings()
    params = EventParams(
        ChangeParams(z=rs.z, min_step=rs.min_step, min_pulse=rs.min_pulse, min_trend=rs.min_trend),
        swap_days=rs.swap_days,
        top_episodes=rs.top_episodes,
    )
    password = sink.password.get_secret_value() if sink.password else None
    with Store.open(sink.dsn, password=password) as store:
        paths = write_report(
            store,
            quarter,
            out_dir or rs.out_dir,
            sensor=sensor,
            focus_region=focus_region or rs.focus_region,
            params=params,
        )
    click.echo(paths.tables)
    click.echo(f"report: {paths.html}\nfigures: {paths.json}")


# -- demo ------------------------------------------------------------------------------------


@main.command()
@click.option(
    "--packets-per-day",
    type=int,
    default=20_000,
    show_default=True,
    help="Simulated packets a day (two quarters are simulated).",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=Path("demo-out"),
    show_default=True,
    help="Folder of the report and of this run's store and logs.",
)
@click.option("--keep-broker", is_flag=True, help="Leave a broker this command started running.")
def demo(packets_per_day: int, out_dir: Path, keep_broker: bool) -> None:
    """Broker up, two simulated quarters through worker and sink, the report written."""
    from darkscope.demo import DemoPlan, run_demo

    run_demo(
        BrokerSettings(),
        KafkaSettings(),
        DemoPlan(out_dir=out_dir, packets_per_day=packets_per_day),
        keep_broker=keep_broker,
        echo=click.echo,
    )


if __name__ == "__main__":  # pragma: no cover
    main()
