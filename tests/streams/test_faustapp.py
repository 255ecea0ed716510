"""The worker's Faust app builds its Kafka consumer with a short broker-side fetch wait
(streams.faustapp), through Faust's own classes (no broker needed: nothing connects)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from core.settings import KafkaSettings, WorkerSettings
from streams.faustapp import FETCH_MAX_WAIT_MS, faust_app


def test_the_worker_consumer_waits_at_most_fetch_max_wait_ms_at_the_broker(tmp_path: Path) -> None:
    async def build() -> int:
        app = faust_app(WorkerSettings(data_dir=tmp_path), KafkaSettings(bootstrap="127.0.0.1:1"))
        thread = app.consumer._new_consumer_thread()
        aio = thread._create_worker_consumer(app.transport)
        wait = int(aio._fetch_max_wait_ms)
        await aio.stop()
        return wait

    assert FETCH_MAX_WAIT_MS < 1500  # Faust's own value
    assert asyncio.run(build()) == FETCH_MAX_WAIT_MS
