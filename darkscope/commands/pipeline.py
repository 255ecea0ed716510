"""`darkscope worker` and `darkscope alerts` (the stream side), `darkscope sink` and `darkscope sql`
(the ClickHouse store)."""

from __future__ import annotations

import click

from core.settings import ForwardSettings, KafkaSettings, SinkSettings, TopicNames, WorkerSettings
from darkscope.options import SettingOption, bootstrap_option, build, dsn_option

__all__ = ["alerts", "sink", "sql", "worker"]


@click.command()
@click.option(
    "--loglevel",
    type=click.Choice(["crit", "error", "warn", "info", "debug"]),
    default="info",
    show_default=True,
    help="Faust log level.",
)
@bootstrap_option
def worker(loglevel: str, bootstrap: str | None) -> None:
    """Run a stream worker: enrichment, windowed counts, alerts (Faust app)."""
    from streams.worker import run_worker

    run_worker(build(WorkerSettings), build(KafkaSettings, bootstrap=bootstrap), build(TopicNames), loglevel)


@click.group()
def alerts() -> None:
    """Read real-time alerts, or forward them to a webhook."""


@alerts.command("tail")
@click.option("--from-beginning", is_flag=True, help="Start at the oldest alert, not the newest.")
@click.option("--max", "limit", type=int, default=0, help="Stop after this many alerts (0: never).")
@click.option("--timeout", type=float, default=0.0, help="Stop after this many idle seconds (0: never).")
@bootstrap_option
def alerts_tail(from_beginning: bool, limit: int, timeout: float, bootstrap: str | None) -> None:
    """Print alerts from darkscope.alerts as they arrive, one readable line each."""
    from streams.alert_reader import tail_alerts

    kafka = build(KafkaSettings, bootstrap=bootstrap)
    for line in tail_alerts(kafka.bootstrap, build(TopicNames).alerts, from_beginning, limit, timeout):
        click.echo(line)


@alerts.command("forward")
@click.option(
    "--url",
    cls=SettingOption,
    settings_cls=ForwardSettings,
    field="url",
    metavar="URL",
    help="Webhook URL.",
    default_text="none",
)
@click.option(
    "--format",
    "fmt",
    cls=SettingOption,
    settings_cls=ForwardSettings,
    field="format",
    type=click.Choice(["json", "slack"]),
)
@click.option(
    "--min-severity",
    cls=SettingOption,
    settings_cls=ForwardSettings,
    field="min_severity",
    type=click.Choice(["info", "warning", "critical"]),
)
@click.option(
    "--unsigned", is_flag=True, help="Post without the signature header (no DARKSCOPE_FORWARD_SECRET needed)."
)
@click.option("--max", "limit", type=int, default=0, help="Stop after this many alerts (0: never).")
@click.option("--timeout", type=float, default=0.0, help="Stop after this many idle seconds (0: never).")
@bootstrap_option
def alerts_forward(
    url: str | None,
    fmt: str | None,
    min_severity: str | None,
    unsigned: bool,
    limit: int,
    timeout: float,
    bootstrap: str | None,
) -> None:
    """Post every alert to a webhook, signed, retried while it fails, none skipped.

    Each alert is posted as JSON (or a Slack message) with X-Darkscope-Signature: sha256=<HMAC of
    the body with DARKSCOPE_FORWARD_SECRET> and an Idempotency-Key; its offset is committed only
    after a 2xx, so a restart may post an alert again, with the same key (at least once).
    """
    import signal
    import threading

    from streams.forward import ForwardPlan, forward_alerts

    settings = build(ForwardSettings, url=url, format=fmt, min_severity=min_severity)
    if not settings.url:
        raise click.UsageError("give --url URL (or DARKSCOPE_FORWARD_URL)")
    if settings.secret is None and not unsigned:
        raise click.UsageError(
            "DARKSCOPE_FORWARD_SECRET is not set: the webhook could not tell these posts from forgeries "
            "(--unsigned posts without a signature)"
        )
    secret = None if unsigned or settings.secret is None else settings.secret.get_secret_value().encode()
    plan = ForwardPlan(
        settings.url,
        settings.format,
        secret,
        settings.min_severity,
        settings.timeout,
        max_backoff=settings.max_backoff,
    )
    kafka = build(KafkaSettings, bootstrap=bootstrap)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stats = forward_alerts(
        kafka.bootstrap,
        build(TopicNames).alerts,
        settings.group_id,
        plan,
        limit=limit,
        idle_timeout=timeout,
        stop=stop,
    )
    click.echo(stats.line())


@click.command()
@click.option(
    "--exit-when-idle",
    type=float,
    default=None,
    help="Stop once no message has come for this many seconds (one-off loads).",
)
@dsn_option
@bootstrap_option
def sink(exit_when_idle: float | None, dsn: str | None, bootstrap: str | None) -> None:
    """Store enriched batches and sensor health from Kafka in ClickHouse."""
    from sinks.run import run_sink

    kafka = build(KafkaSettings, bootstrap=bootstrap)
    stats = run_sink(build(SinkSettings, dsn=dsn), kafka, build(TopicNames), exit_when_idle)
    click.echo(
        f"stored {stats.rows} packets from {stats.batches} batches in {stats.inserts} inserts; "
        f"{stats.health} sensor health records, {stats.dead} dead letters, {stats.retries} retries"
    )


@click.command()
@click.argument("query")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
    help="Output format.",
)
@dsn_option
def sql(query: str, fmt: str, dsn: str | None) -> None:
    """Run a SQL query against the ClickHouse store and print the answer."""
    from sinks.sql import render_csv, render_json, render_table, run_sql

    settings = build(SinkSettings, dsn=dsn)
    password = settings.password.get_secret_value() if settings.password else None
    answer = run_sql(settings.dsn, query, password)
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
