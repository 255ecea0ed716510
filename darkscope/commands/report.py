"""`darkscope report` (the quarterly report from the store) and `darkscope demo` (the whole
pipeline on this machine, down to the report)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from core.settings import BrokerSettings, KafkaSettings, ReportSettings, SensorSettings, SinkSettings
from darkscope.commands.csirt import sensor_group_option
from darkscope.options import (
    build,
    dsn_option,
    env_name,
    focus_region_option,
    packets_per_day_option,
    prefix_option,
    quarter_option,
    report_out_option,
    sensor_id_option,
)

__all__ = ["demo", "report"]


@click.command()
@quarter_option(required=True)
@click.option(
    "--sensor",
    default=None,
    metavar="ID",
    help="Only the packets of the sensor with this id (default: all sensors).",
)
@sensor_group_option
@focus_region_option
@report_out_option
@dsn_option
@click.option(
    "--notes",
    "notes",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    metavar="FILE.md",
    help="The analyst's own sections (findings, recommendations) in Markdown: headings, paragraphs, "
    "lists and emphasis, rendered into the report (HTML is escaped).",
)
def report(
    quarter: str,
    sensor: str | None,
    sensor_group: str | None,
    focus_region: str | None,
    out_dir: Path | None,
    dsn: str | None,
    notes: Path | None,
) -> None:
    """Write the quarterly report (HTML with inline charts, and JSON) from the ClickHouse store."""
    from reports.build import write_report
    from reports.changes import ChangeParams
    from reports.events import EventParams
    from reports.queries import require_schema
    from sinks.store import Store

    rs = build(ReportSettings, focus_region=focus_region, out_dir=out_dir)
    store_settings = build(SinkSettings, dsn=dsn)
    params = EventParams(
        ChangeParams(z=rs.z, min_step=rs.min_step, min_pulse=rs.min_pulse, min_trend=rs.min_trend),
        swap_days=rs.swap_days,
        top_episodes=rs.top_episodes,
    )
    password = store_settings.password.get_secret_value() if store_settings.password else None
    notes_md = notes.read_text(encoding="utf-8") if notes else ""
    with Store.open(store_settings.dsn, password=password) as store:
        require_schema(store, store_settings.dsn)
        paths = write_report(
            store,
            quarter,
            rs.out_dir,
            sensor=sensor,
            focus_region=rs.focus_region,
            params=params,
            notes=notes_md,
            sensor_group=sensor_group,
        )
    click.echo(paths.tables)
    click.echo(f"report: {paths.html}\nfigures: {paths.json}")


@click.command()
@packets_per_day_option(20_000)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=Path("demo-out"),
    show_default=True,
    metavar="DIR",
    help="Folder of the report and of this run's store and logs.",
)
@click.option("--keep-broker", is_flag=True, help="Leave a broker this command started running.")
@click.option(
    "--pcap",
    "pcaps",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, allow_dash=True),
    metavar="FILE",
    help="Capture file to replay (repeatable; pcap/pcapng, gzip ok; - for stdin).",
)
@sensor_id_option(default_text="the first capture's file name")
@prefix_option
def demo(
    packets_per_day: int,
    out_dir: Path,
    keep_broker: bool,
    pcaps: tuple[str, ...],
    sensor_id: str | None,
    prefixes: tuple[str, ...],
) -> None:
    """Broker up, two simulated quarters (or your captures) through worker and sink, the report
    written.

    With --pcap, your capture files are replayed instead of the simulation, and the report of
    every quarter they cover is written; --sensor-id and --prefix describe them. The broker is
    the local one of `darkscope broker` (DARKSCOPE_BROKER_*); each run has its own topics,
    consumer groups and store under --out.
    """
    from darkscope.demo import DemoPlan, run_demo

    if (sensor_id or prefixes) and not pcaps:
        raise click.UsageError("--sensor-id and --prefix describe the captures of --pcap")
    if pcaps and os.environ.get(env_name(SensorSettings, "sensor_id")) and not sensor_id:
        sensor_id = build(SensorSettings).sensor_id
    if pcaps and not prefixes:
        prefixes = tuple(build(SensorSettings).prefixes)
    run_demo(
        build(BrokerSettings),
        build(KafkaSettings),
        DemoPlan(
            out_dir=out_dir,
            packets_per_day=packets_per_day,
            pcaps=pcaps,
            sensor_id=sensor_id,
            prefixes=prefixes,
        ),
        keep_broker=keep_broker,
        echo=click.echo,
    )
