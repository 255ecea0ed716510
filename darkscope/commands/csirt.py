"""`darkscope sensors load|list` (the sensor registry and its groups) and `darkscope notify`
(per-AS notification lists): the CSIRT's side of the store."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import click

from core.settings import SinkSettings
from darkscope.options import SettingOption, bootstrap_option, build, dsn_option

__all__ = [
    "min_packets_option",
    "notify",
    "scans",
    "sensor_group_option",
    "sensors",
    "since_option",
    "until_option",
]


def _open_store(dsn: str | None) -> Any:
    """The configured store, migrated (the registry tables exist from schema step 6)."""
    from sinks.store import Store

    settings = build(SinkSettings, dsn=dsn)
    password = settings.password.get_secret_value() if settings.password else None
    store = Store.open(settings.dsn, password=password)
    store.migrate()
    return store


def _console() -> Any:
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=1000)


@click.group()
def sensors() -> None:
    """The sensor registry: each sensor's group, country and monitored prefixes over time."""


@sensors.command("load")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@dsn_option
def sensors_load(file: Path, dsn: str | None) -> None:
    """Load a registry file (TOML, [[sensor]] entries): it becomes the registry in force; earlier
    loads are kept."""
    from sinks.registry import load_registry, store_registry

    periods = load_registry(file)
    with _open_store(dsn) as store:
        at = store_registry(store, periods, str(file))
    groups = sorted({p.group for p in periods})
    click.echo(
        f"registry loaded at {at.isoformat(timespec='seconds')}: {len({p.sensor for p in periods})} sensors, "
        f"{len(periods)} periods, groups {', '.join(groups)}"
    )


@sensors.command("list")
@click.option(
    "--history", is_flag=True, help="Every load of the registry, oldest first, not only the one in force."
)
@dsn_option
def sensors_list(history: bool, dsn: str | None) -> None:
    """Show the registry in force, one line per sensor and period."""
    from sinks.registry import current_registry, registry_loads

    with _open_store(dsn) as store:
        loads = registry_loads(store) if history else []
        periods = current_registry(store)
    if not periods:
        click.echo("no sensor registry loaded: every packet counts under the group 'unregistered'")
        return
    for at, source, load in loads:
        _console().print(_registry_table(load, f"loaded {at.isoformat(timespec='seconds')} from {source}"))
    if not history:
        _console().print(_registry_table(periods, ""))


def _registry_table(periods: list[Any], caption: str) -> Any:
    from rich.table import Table

    table = Table(caption=caption or None, caption_justify="left")
    for name, right in (
        ("sensor", False),
        ("group", False),
        ("country", False),
        ("prefixes", False),
        ("addresses", True),
        ("from", False),
        ("until", False),
    ):
        table.add_column(name, justify="right" if right else "left")
    for p in periods:
        table.add_row(
            p.sensor,
            p.group,
            p.country,
            " ".join(p.prefixes),
            f"{p.monitored_addresses:,}",
            p.active_from.isoformat(),
            p.active_until.isoformat() if p.active_until else "(active)",
        )
    return table


def _day(_ctx: click.Context, _param: click.Parameter, value: str | None) -> date | None:
    if value is None:
        return None
    if value == "today":
        from datetime import UTC, datetime

        return datetime.now(UTC).date()
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not a date (2022-04-01, or today)") from exc


# Options these commands and `darkscope report` share: one decorator, one meaning each.
_SINCE_HELP = "First day (2022-04-01, or today; UTC)."
since_option = click.option("--since", required=True, callback=_day, metavar="DATE", help=_SINCE_HELP)
until_option = click.option(
    "--until", callback=_day, metavar="DATE", help="Last day, inclusive (default: today, UTC)."
)
sensor_group_option = click.option(
    "--sensor-group",
    default=None,
    metavar="G",
    help="Only the sensors of this group in the registry, day by day (`darkscope sensors load`); "
    "'unregistered': the sensors it does not list.",
)
min_packets_option = click.option(
    "--min-packets",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    metavar="N",
    help="Only sources (over the period) or scans with at least this many packets.",
)


@click.command()
@since_option
@until_option
@click.option(
    "--region", "regions", multiple=True, metavar="CC", help="Only sources of this region (repeatable)."
)
@click.option(
    "--asn", "asns", multiple=True, type=int, metavar="N", help="Only sources of this AS (repeatable)."
)
@click.option(
    "--fingerprint",
    type=click.Choice(["mirai", "zmap", "masscan", "backscatter-victim", "any"]),
    default=None,
    help="Only sources recognised as this (per-source verdict; backscatter by its replies; any: one "
    "of them). Default: every source.",
)
@sensor_group_option
@min_packets_option
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    metavar="DIR",
    help="Folder for the per-AS and per-region CSV and JSON files.",
)
@click.option(
    "--show",
    type=click.IntRange(min=0),
    default=20,
    show_default=True,
    metavar="N",
    help="ASes shown in the terminal, most packets first (0: all); the files hold every one.",
)
@dsn_option
def notify(
    since: date,
    until: date | None,
    regions: tuple[str, ...],
    asns: tuple[int, ...],
    fingerprint: str | None,
    sensor_group: str | None,
    min_packets: int,
    out_dir: Path,
    show: int,
    dsn: str | None,
) -> None:
    """Write notification lists: per AS the sources to report with their evidence (CSV and JSON),
    and a summary per region for its national CSIRT."""
    from datetime import UTC, datetime

    from rich.table import Table

    from reports.notify import NotifyFilter, notification, write_notification

    last = until or datetime.now(UTC).date()
    if last < since:
        raise click.BadParameter("--until is before --since", param_hint="--until")
    f = NotifyFilter(since, last, regions, asns, fingerprint, sensor_group, min_packets)
    with _open_store(dsn) as store:
        n = notification(store, f)
    paths = write_notification(n, out_dir)
    shown = n.ases[: show or None]
    caption = f"{len(n.ases)} ASes, {n.sources:,} sources"
    if len(shown) < len(n.ases):
        caption += f"; the {len(shown)} with the most packets shown"
    table = Table(caption=caption, caption_justify="left")
    for name, right in (
        ("AS", True),
        ("organisation", False),
        ("regions", False),
        ("sources", True),
        ("packets", True),
        ("file", False),
    ):
        table.add_column(name, justify="right" if right else "left")
    for a in shown:
        table.add_row(
            str(a.asn),
            a.as_org or "(unknown)",
            " ".join(a.regions[:4]) + (f" +{len(a.regions) - 4}" if len(a.regions) > 4 else ""),
            f"{len(a.sources):,}",
            f"{a.packets:,}",
            f"{a.stem}.csv",
        )
    _console().print(table)
    if n.excluded_reserved:
        click.echo(f"{n.excluded_reserved} sources of private or reserved space left out")
    click.echo(f"notification lists for {since} to {last}: {len(paths)} files in {out_dir}")


_PROTOCOLS = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6", 132: "sctp"}


_idle_option = click.option(
    "--idle",
    cls=SettingOption,
    settings_cls=SinkSettings,
    field="scan_idle",
    type=click.IntRange(min=60),
    metavar="SECONDS",
)


# A group that is also the listing: `darkscope scans --since DATE` lists, `darkscope scans
# publish` publishes; --since is required only when listing.
@click.group(invoke_without_command=True)
@click.option(
    "--since",
    callback=_day,
    metavar="DATE",
    help=_SINCE_HELP,  # required to list: checked below
)
@until_option
@_idle_option
@min_packets_option
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=50,
    show_default=True,
    metavar="N",
    help="Rows shown, largest scans first (0: all).",
)
@dsn_option
@click.pass_context
def scans(
    ctx: click.Context,
    since: date | None,
    until: date | None,
    idle: int | None,
    min_packets: int,
    limit: int,
    dsn: str | None,
) -> None:
    """List the scans that started on the days given: a source's packets on one protocol until it
    was silent for the idle timeout (Merit darknet-events style). `scans publish` puts the ended
    ones on the darkscope.scans topic."""
    if ctx.invoked_subcommand is not None:
        return
    if since is None:
        raise click.UsageError("Missing option '--since'.", ctx)
    from datetime import UTC, datetime, timedelta

    from rich.table import Table

    from reports.notify import fingerprint_names
    from sinks.scans import scan_events

    settings = build(SinkSettings, dsn=dsn, scan_idle=idle)
    last = until or datetime.now(UTC).date()
    start = datetime(since.year, since.month, since.day, tzinfo=UTC)
    end = datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1)
    with _open_store(settings.dsn) as store:
        events = scan_events(store, settings.scan_idle, start, end, min_packets)
    shown = sorted(events, key=lambda e: (-e.packets, e.start))[: limit or None]
    table = Table(
        caption=f"{len(events):,} scans started {since} to {last} (idle timeout {settings.scan_idle} s); "
        f"{len(shown)} shown",
        caption_justify="left",
    )
    for name, right in (
        ("start", False),
        ("end", False),
        ("source", False),
        ("proto", False),
        ("packets", True),
        ("dsts", True),
        ("ports", True),
        ("fingerprints", False),
        ("AS", True),
        ("", False),
    ):
        table.add_column(name, justify="right" if right else "left")
    for e in shown:
        table.add_row(
            f"{e.start:%Y-%m-%d %H:%M:%S}",
            f"{e.end:%Y-%m-%d %H:%M:%S}",
            e.source,
            _PROTOCOLS.get(e.protocol, str(e.protocol)),
            f"{e.packets:,}",
            f"{e.destinations:,}",
            f"{e.ports:,}",
            " ".join(fingerprint_names(e.fp_flags, e.fp_verdict)),
            str(e.asn),
            "open" if e.open else "",
        )
    _console().print(table)


@scans.command("publish")
@_idle_option
@click.option(
    "--follow",
    is_flag=True,
    help="Keep publishing: a run every --every seconds until interrupted (Ctrl-C).",
)
@click.option(
    "--every",
    type=click.FloatRange(min=1),
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="Seconds between runs with --follow.",
)
@dsn_option
@bootstrap_option
def scans_publish(
    idle: int | None, follow: bool, every: float, dsn: str | None, bootstrap: str | None
) -> None:
    """Publish each scan event that has ended (its last packet more than the idle timeout before
    the newest packet stored) and was not published before, on darkscope.scans (Avro ScanEvent,
    keyed by source; at least once, a repeat has the same id)."""
    import time

    from core.publisher import Publisher
    from core.settings import KafkaSettings, TopicNames
    from core.topics import ensure_topics
    from sinks.scanpublish import publish_ended

    settings = build(SinkSettings, dsn=dsn, scan_idle=idle)
    kafka = build(KafkaSettings, bootstrap=bootstrap)
    topic = build(TopicNames).scans
    ensure_topics(kafka, [topic])
    publisher = Publisher(kafka.bootstrap)
    try:
        while True:
            # Opened per run: an embedded chDB store is then free for others between runs.
            with _open_store(settings.dsn) as store:
                run = publish_ended(store, publisher, topic, settings.scan_idle)
            ended = run.ended_before
            click.echo(
                f"{run.published} scan events published to {topic} (idle timeout {settings.scan_idle} s); "
                + (
                    f"every scan that ended before {ended:%Y-%m-%d %H:%M:%S} is on the topic"
                    if ended
                    else "no scan has ended yet"
                )
            )
            if not follow:
                return
            time.sleep(every)
    except KeyboardInterrupt:
        click.echo("stopped")
