"""Counting that survives a partition moving to another worker.

Both counting stages keep state in memory: a counts partition its open windows (and closed
ones that late packets may still correct, :mod:`streams.shard`), the merge stage a kind's
windows waiting for every counts partition (:mod:`streams.merge`). Faust commits the offsets
of what they merged. When a rebalance moves a partition to another worker (a worker added or
removed, KEDA scaling, a restart), the new owner resumes at the committed offset with none of
that memory: what was merged into windows still open would be lost.

So each keeps a **replay point** in the ``window_counts`` table (key ``#counts-<n>|replay`` for
counts partition n, ``kind|replay`` for a kind's merge):

- ``final_before``: an hour boundary below which every window is final. It is the retention
  horizon (watermark minus ``retention``: late packets can no longer correct those windows)
  rounded down to the hour, so no hour window straddles it;
- ``offset``: the oldest offset, in the partition, of a message that touched a window at or
  after ``final_before``.

It is written whenever ``final_before`` moves on (once per hour of event time). Faust flushes
table writes before it commits offsets, so the replay point in the changelog is never behind
the committed offset. A worker that receives the first message of a partition (a new owner, or
the same worker after a restart) reads the replay point from the table (restored from the
changelog) and re-reads the partition from ``offset`` up to the message in hand, merging only
rows at or after ``final_before``. That rebuilds every window that is not final exactly as the
old owner had it: every message that touched it is at or after ``offset``. Rows before
``final_before`` are dropped: the old owner counted them into final windows.

A packet batch can be enriched twice (Kafka delivers at least once: a worker that stops or
loses its packets partition before committing), and its partials then come twice: the replay
point also remembers the newest packet offset merged per packets partition, and a partial at
or before it is a repeat (:meth:`ReplayPoint.first_time`). A new owner rebuilds that from the
partials it re-reads: the original of any repeat that still matters is among them.

Windows a counts partition's old owner had already closed are closed again with the same
counts and sent again; the merge stage takes them as replacements of what that partition sent
(nothing counts twice). A new merge owner publishes again what it rebuilt, and raises no alert
a second time: :func:`published_until` tells, from the table, up to where windows were
published.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import orjson

from core.errors import CodecError
from core.topics import read_range, watermarks
from schemas.windowrows import NEVER

__all__ = [
    "ReplayPoint",
    "Takeover",
    "decode_replay_point",
    "episodes_key",
    "published_until",
    "read_partition",
    "read_partition_async",
    "replay_messages",
    "replay_key",
    "window_keys",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

REPLAY_TIMEOUT_S = 600.0


def replay_key(kind: str) -> bytes:
    """Table key of a kind's replay point."""
    return f"{kind}|replay".encode()


def episodes_key(kind: str) -> bytes:
    """Table key of how far a kind's merge stage closed backscatter episodes (epoch seconds:
    episodes whose last minute ended before it are closed)."""
    return f"{kind}|episodes".encode()


@dataclass
class ReplayPoint:
    """Where a new owner of a kind must start re-reading its counts partition."""

    partition: int
    final_before: int = NEVER
    # (offset, newest minute) of the partials merged, oldest first; the front is dropped as
    # soon as its newest minute is final. An entry behind a newer, unfinished one waits: the
    # replay re-reads it and drops its final rows, which is harmless.
    _pending: deque[tuple[int, int]] = field(default_factory=deque)
    _next_offset: int = 0
    # packets partition -> newest packet batch offset merged from it (repeats are skipped)
    _merged: dict[int, int] = field(default_factory=dict)

    def first_time(self, source_partition: int, source_offset: int) -> bool:
        """True the first time a partial of this packet batch comes (and remember it); False
        for a repeat: a batch at or before the newest one merged from its partition."""
        if source_offset < 0:
            return True
        if source_offset <= self._merged.get(source_partition, -1):
            return False
        self._merged[source_partition] = source_offset
        return True

    def record(self, offset: int, newest_minute: int | None) -> None:
        """A partial at ``offset`` was merged (``newest_minute``: None when it had no rows)."""
        if newest_minute is not None and newest_minute >= self.final_before:
            self._pending.append((offset, newest_minute))
        self._next_offset = max(self._next_offset, offset + 1)

    def advance(self, horizon_s: int) -> bytes | None:
        """The table value to write when the windows' retention horizon moved past an hour
        boundary (None while ``final_before`` stays where it is)."""
        final_before = horizon_s - horizon_s % 3600
        if final_before <= self.final_before:
            return None
        self.final_before = final_before
        while self._pending and self._pending[0][1] < final_before:
            self._pending.popleft()
        offset = self._pending[0][0] if self._pending else self._next_offset
        return orjson.dumps({"final_before": final_before, "partition": self.partition, "offset": offset})

    def __len__(self) -> int:
        return len(self._pending)


def decode_replay_point(value: bytes | None, partition: int) -> tuple[int, int]:
    """(final_before, offset) of a stored replay point; (NEVER, 0) when there is none, or when
    it was written for another partition (the partition count changed: re-read it all)."""
    if not value:
        return NEVER, 0
    point = orjson.loads(value)
    if int(point["partition"]) != partition:
        return NEVER, 0
    return int(point["final_before"]), int(point["offset"])


def window_keys(table: Mapping[bytes, bytes], kind: str) -> dict[bytes, int]:
    """The table keys of ``kind``'s windows (not its replay point), with the end of the hour each
    covers (an hour window, or an hour of minute windows)."""
    prefix = f"{kind}|".encode()
    out = {}
    for key in table:
        parts = key.split(b"|")
        if key.startswith(prefix) and len(parts) == 3:
            out[key] = int(parts[2]) + 3600
    return out


def published_until(table: Mapping[bytes, bytes], kind: str) -> dict[str, int]:
    """Start of the newest window of each size (``1m``, ``1h``) that the table holds for
    ``kind``: windows close in time order, so everything up to it has been published."""
    newest = {"1m": NEVER, "1h": NEVER}
    prefix = f"{kind}|".encode()
    bundle: bytes | None = None
    for key in table:
        if not key.startswith(prefix):
            continue
        parts = key.decode().split("|")
        if len(parts) != 3:
            continue  # the replay point
        _, size, start = parts
        if size == "1h":
            newest["1h"] = max(newest["1h"], int(start))
        elif size == "1m" and int(start) > newest["1m"]:
            newest["1m"], bundle = int(start), key
    if bundle is not None:  # the newest hour of minutes: its newest closed minute
        minutes = orjson.loads(table[bundle])["minutes"]
        newest["1m"] = max((int(m["start"]) for m in minutes), default=newest["1m"])
    return newest


def read_partition(
    bootstrap: str, topic: str, partition: int, start: int, end: int, key: bytes | None = None
) -> list[tuple[int, bytes]]:
    """The (offset, value) of the messages in ``topic[partition]`` from ``start`` (clamped to
    the log start) up to, not including, ``end``; only those keyed ``key`` when it is given."""
    low, _ = watermarks(bootstrap, topic)[partition]
    if start < low and start > 0:
        logger.warning(
            "%s[%d]: the replay point %d is below the log start %d: messages before it were "
            "deleted by the topic's retention, and their open windows cannot be rebuilt",
            topic,
            partition,
            start,
            low,
        )
    start = max(start, low)
    out = []
    for msg in read_range(bootstrap, topic, {partition: start}, {partition: end}, REPLAY_TIMEOUT_S):
        offset = msg.offset()
        if offset is not None and offset < end and (key is None or msg.key() == key):
            out.append((offset, bytes(msg.value() or b"")))
    return out


@dataclass
class Takeover:
    """What a worker learned when it took a kind over (for logs and tests)."""

    kind: str
    partition: int
    final_before: int
    replay_from: int
    replayed: int
    published: dict[str, int]


async def replay_messages(
    bootstrap: str,
    topic: str,
    partition: int,
    start: int,
    end: int,
    decode: Callable[[bytes], T],
    key: bytes | None = None,
) -> list[tuple[int, T]]:
    """The (offset, decoded message) a new owner re-reads, from ``start`` up to ``end`` (in a
    thread: the event loop keeps heartbeats going). Undecodable messages are skipped: they were
    dead-lettered when first read."""
    out: list[tuple[int, T]] = []
    if start >= end:
        return out
    for offset, value in await read_partition_async(bootstrap, topic, partition, start, end, key):
        try:
            out.append((offset, decode(value)))
        except CodecError:
            continue
    return out


async def read_partition_async(
    bootstrap: str, topic: str, partition: int, start: int, end: int, key: bytes | None = None
) -> list[tuple[int, bytes]]:
    """:func:`read_partition` in a thread, so the worker's event loop (heartbeats) keeps running."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, read_partition, bootstrap, topic, partition, start, end, key)
