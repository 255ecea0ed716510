"""The ``darkscope sink`` process: open and migrate the store (waiting while ClickHouse is
unreachable), run a :class:`sinks.sink.Sink` until SIGINT/SIGTERM."""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from typing import Any

from core.errors import StoreLocked, StoreUnavailable
from core.settings import KafkaSettings, SinkSettings, TopicNames
from sinks.loop import SinkStats
from sinks.sink import Sink
from sinks.store import Store, safe_dsn

__all__ = ["open_store", "run_sink"]

logger = logging.getLogger(__name__)


def open_store(settings: SinkSettings, sleep: Callable[[float], None] = time.sleep) -> Store:
    """Open and migrate the configured store, waiting (with backoff) while it is unreachable."""
    password = settings.password.get_secret_value() if settings.password else None
    delay = 0.5
    while True:
        try:
            store = Store.open(settings.dsn, password=password)
        except StoreLocked:
            raise
        except StoreUnavailable as exc:
            logger.warning("ClickHouse unavailable, retrying in %.1f s: %s", delay, exc)
            sleep(delay)
            delay = min(delay * 2, settings.max_backoff)
            continue
        try:
            store.migrate(settings.ttl_days)
            return store
        except StoreUnavailable as exc:
            store.close()
            logger.warning("ClickHouse unavailable, retrying in %.1f s: %s", delay, exc)
            sleep(delay)
            delay = min(delay * 2, settings.max_backoff)


def run_sink(
    settings: SinkSettings, kafka: KafkaSettings, topics: TopicNames, exit_when_idle: float | None = None
) -> SinkStats:
    """The ``darkscope sink`` process: open the store, consume until SIGINT/SIGTERM."""
    store = open_store(settings)
    try:
        sink = Sink(store, settings, kafka, topics)

        def handler(signum: int, _frame: Any) -> None:
            logger.info("signal %d: finishing the groups in hand", signum)
            sink.stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
        logger.info("sink: %s -> %s (schema v%d)", topics.enriched, safe_dsn(settings.dsn), store.version())
        return sink.run(exit_when_idle)
    finally:
        store.close()
