"""`darkscope broker` (a local single-node broker) and `darkscope topics` (darkscope's topics)."""

from __future__ import annotations

import sys
import time

import click

from core import broker as broker_mod
from core.settings import BrokerSettings, KafkaSettings, TopicNames
from core.topics import ensure_topics, list_topics
from darkscope.options import bootstrap_option, build, partitions_option

__all__ = ["broker", "topics"]


@click.group()
def broker() -> None:
    """Run a local single-node Kafka broker (KRaft) from the pinned Maven jars.

    Its port and folders come from DARKSCOPE_BROKER_* (see README.md, "Settings").
    """


@broker.command("fetch")
def broker_fetch() -> None:
    """Fetch the pinned broker jars with Maven (done by `up` when needed)."""
    click.echo(f"jars in {broker_mod.ensure_jars(build(BrokerSettings))}")


@broker.command("up")
@click.option(
    "--topics/--no-topics",
    default=True,
    show_default=True,
    help="Create the darkscope topics once the broker answers.",
)
@partitions_option
def broker_up(topics: bool, partitions: int | None) -> None:
    """Start the broker unless one is running (and wait until it serves clients); create the topics."""
    t0 = time.monotonic()
    status, started = broker_mod.start(build(BrokerSettings))
    if started:
        click.echo(
            f"broker started on {status.bootstrap} in {time.monotonic() - t0:.1f} s "
            f"(pid {status.pid}, log {status.log_file})"
        )
    else:
        click.echo(f"broker already running on {status.bootstrap} (pid {status.pid}); nothing done")
    if topics:
        kafka = build(KafkaSettings, bootstrap=status.bootstrap, partitions=partitions)
        for t in ensure_topics(kafka, build(TopicNames).all()):
            click.echo(f"  topic {t.name}: {t.partitions} partitions")


@broker.command("status")
def broker_status() -> None:
    """Say whether the broker runs and answers metadata requests (exit 1 when not)."""
    st = broker_mod.broker_status(build(BrokerSettings))
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
    if broker_mod.stop(build(BrokerSettings)):
        click.echo("broker stopped")
    else:
        click.echo("no broker was running")


@click.group()
def topics() -> None:
    """Create and list darkscope's Kafka topics."""


@topics.command("create")
@bootstrap_option
@partitions_option
def topics_create(bootstrap: str | None, partitions: int | None) -> None:
    """Create the darkscope topics that are missing."""
    kafka = build(KafkaSettings, bootstrap=bootstrap, partitions=partitions)
    for t in ensure_topics(kafka, build(TopicNames).all()):
        click.echo(f"{t.name}\t{t.partitions}")


@topics.command("list")
@bootstrap_option
def topics_list(bootstrap: str | None) -> None:
    """List the topics on the cluster with their partition counts."""
    for t in list_topics(build(KafkaSettings, bootstrap=bootstrap).bootstrap):
        click.echo(f"{t.name}\t{t.partitions}")
