"""Run the Faust app as a worker process (`darkscope worker`)."""

from __future__ import annotations

import logging
import sys

from core.settings import KafkaSettings, TopicNames, WorkerSettings
from core.topics import ensure_topics
from streams.app import create_app

__all__ = ["run_worker"]


def run_worker(
    settings: WorkerSettings, kafka: KafkaSettings, topics: TopicNames, loglevel: str = "info"
) -> None:
    """Create the topics the app needs (partition counts must match), then run a worker."""
    ensure_topics(
        kafka,
        [topics.packets, topics.enriched, topics.counts, topics.windows, topics.alerts, topics.deadletter],
    )
    app = create_app(settings, kafka, topics)
    level = logging.getLevelName(loglevel.upper())

    @app.task  # type: ignore[untyped-decorator]
    async def restore_log_level() -> None:
        # Faust's start-up spinner leaves the root logger at DEBUG, which makes every debug
        # call in aiokafka and Faust build a record (~6 % of a worker's time, py-spy).
        logging.getLogger().setLevel(level)

    # Faust's own command line parses sys.argv: hand it the worker command.
    web = ["--with-web", "--web-port", str(settings.web_port)] if settings.web_port else ["--without-web"]
    sys.argv = ["darkscope-worker", "worker", "--loglevel", loglevel, *web]
    app.main()
