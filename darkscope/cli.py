"""The ``darkscope`` command line: one click group wiring settings to the packages."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from darkscope import __version__
from darkscope.errors import DarkscopeError
from darkscope.settings import BrokerSettings, KafkaSettings, TopicNames

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
    from darkscope.broker import ensure_jars

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

    from darkscope import broker as b
    from darkscope.topics import ensure_topics

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
    from darkscope import broker as b

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
    from darkscope import broker as b

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
    from darkscope.topics import ensure_topics

    for t in ensure_topics(KafkaSettings(), partitions=partitions):
        click.echo(f"{t.name}\t{t.partitions}")


@topics.command("list")
def topics_list() -> None:
    """List the topics on the cluster with their partition counts."""
    from darkscope.topics import list_topics

    for t in list_topics(KafkaSettings().bootstrap):
        click.echo(f"{t.name}\t{t.partitions}")


# -- demo ------------------------------------------------------------------------------------


@main.command()
@click.option("--packets", type=int, default=50_000, show_default=True, help="Packets to push through.")
@click.option("--keep-broker", is_flag=True, help="Leave a broker this command started running.")
def demo(packets: int, keep_broker: bool) -> None:
    """Start the broker, push packets through Kafka and back, print what happened."""
    from darkscope.demo import run_demo

    run_demo(
        BrokerSettings(),
        KafkaSettings(),
        TopicNames(),
        packets=packets,
        keep_broker=keep_broker,
        echo=click.echo,
    )


if __name__ == "__main__":  # pragma: no cover
    main()
