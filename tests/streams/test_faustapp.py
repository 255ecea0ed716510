"""The worker's Faust app builds its Kafka consumer with a short broker-side fetch wait
(streams.faustapp), through Faust's own classes (no broker needed: nothing connects)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from faust.types import TP

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


def _commit_after(tmp_path: Path, acked: list[int], committed: int | None, log_start: int = 0) -> int | None:
    """The offset the worker's consumer would commit for one partition with these acks."""

    async def run() -> int | None:
        app = faust_app(WorkerSettings(data_dir=tmp_path), KafkaSettings(bootstrap="127.0.0.1:1"))
        consumer = app.consumer
        tp = TP("darkscope.packets", 2)
        consumer._committed_offset[tp] = committed
        consumer._log_start[tp] = log_start
        consumer._acked[tp] = list(acked)
        consumer._acked_index[tp] = set(acked)
        offset: int | None = consumer._new_offset(tp)
        return offset

    return asyncio.run(run())


def test_a_commit_starts_at_the_committed_offset_and_runs_through_the_acked_ones(tmp_path: Path) -> None:
    assert _commit_after(tmp_path, [10, 11, 12], committed=10) == 13
    assert _commit_after(tmp_path, [10, 11, 13], committed=10) == 12


def test_a_commit_waits_while_the_message_at_the_committed_offset_is_unprocessed(tmp_path: Path) -> None:
    # Faust's own check commits 13 here: batch 10, delivered to no stream, would be skipped.
    assert _commit_after(tmp_path, [11, 12], committed=10) is None
    assert _commit_after(tmp_path, [12], committed=10) is None


def test_with_nothing_committed_a_commit_starts_at_the_partition_start(tmp_path: Path) -> None:
    assert _commit_after(tmp_path, [1, 2], committed=None) is None
    assert _commit_after(tmp_path, [0, 1], committed=None) == 2
    # Retention deleted the first 100 messages: they are not waited for.
    assert _commit_after(tmp_path, [100, 101], committed=None, log_start=100) == 102


def test_a_message_an_agent_read_past_faust_counts_as_acked(tmp_path: Path) -> None:
    async def run() -> int | None:
        app = faust_app(WorkerSettings(data_dir=tmp_path), KafkaSettings(bootstrap="127.0.0.1:1"))
        consumer = app.consumer
        tp = TP("darkscope.counts", 1)
        consumer._committed_offset[tp] = 10
        consumer._acked[tp] = [11, 12]
        consumer._acked_index[tp] = {11, 12}
        assert consumer._new_offset(tp) is None  # 10 never delivered
        consumer.processed(tp, 10)
        consumer.processed(tp, 10)  # twice is once
        consumer.processed(tp, 9)  # below the committed offset: ignored
        offset: int | None = consumer._new_offset(tp)
        return offset

    assert asyncio.run(run()) == 13
