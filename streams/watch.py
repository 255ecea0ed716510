"""Two stalls of Faust's consumer that a worker notices and ends by itself.

1. **A table's recovery waits for ever.** After a rebalance, Faust reads each changelog
   partition a worker newly owns up to its end before any agent runs again. Seen in
   ``bench/rebalance_soak.py`` (about one run in ten, under load): a new owner read a partition
   from its start and received nothing, for minutes ("No event received for active tp ... since
   recovery start"), while the other changelog partitions of the same fetches came in; every
   agent of the worker waited with it. A partition that has changes left and has received
   nothing for ``stall_after`` seconds is sought again from the next offset recovery needs.
2. **A message that reached no stream.** :class:`streams.faustapp._Consumer` holds a commit
   whose committed offset was not processed although later ones were (Faust, in a rebalance,
   can deliver a partition's later messages and not the one at its committed offset). The
   commit is then safe, but without a new rebalance the message would never be read: after
   ``stall_after`` seconds the partition is sought back to it (the messages after it are read a
   second time: every stage already drops a repeat, see :mod:`streams.takeover`).

3. **Messages skipped in the middle of a partition.** After a rebalance, Faust can drop
   messages of a partition a worker keeps (its fetch loop moves a partition's read offset past
   messages it re-fetches after the rebalance's seek; seen on every counts partition of a worker
   in one run, a day 131 packets short). Kafka offsets of these topics are contiguous (no
   compaction, no transactions), so each agent knows the next offset it should see
   (:class:`Gaps`); a message further on means the ones between were skipped, and the agent
   reads them from the broker itself and processes them first, in order.

The decisions are pure functions of times and offsets (tested without Faust); the worker's
agents and timer (:func:`streams.app.create_app`) feed them, read and seek.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = ["STALL_AFTER_S", "Gaps", "Held", "Missed", "held_too_long", "stalled_recovery"]

STALL_AFTER_S = 20.0

K = TypeVar("K")


def stalled_recovery(
    now: float,
    started_at: float | None,
    remaining: Mapping[K, int],
    received_at: Mapping[K, float],
    stall_after: float = STALL_AFTER_S,
) -> list[K]:
    """Changelog partitions whose recovery has changes left and received nothing for
    ``stall_after`` seconds (counted from the recovery's start when nothing came at all)."""
    if started_at is None or now - started_at < stall_after:
        return []
    return [
        tp
        for tp, left in remaining.items()
        if left > 0 and now - received_at.get(tp, started_at) >= stall_after
    ]


@dataclass(frozen=True)
class Held:
    """A partition whose commit is held at ``offset`` (not processed) since ``since``."""

    offset: int
    since: float


def held_too_long(now: float, held: Mapping[K, Held], stall_after: float = STALL_AFTER_S) -> dict[K, int]:
    """The partitions to seek back, with the offset to read again from."""
    return {tp: h.offset for tp, h in held.items() if now - h.since >= stall_after}


@dataclass(frozen=True)
class Missed:
    """A message Faust did not deliver, read from the broker (stands in for Faust's Message)."""

    topic: str
    partition: int
    offset: int
    value: bytes
    tp: Any
    key: bytes | None = None
    timestamp: float = field(default_factory=time.time)


class Gaps:
    """The next offset each (topic, partition) should deliver to an agent of this worker."""

    def __init__(self) -> None:
        self._next: dict[tuple[str, int], int] = {}

    def missing(self, topic: str, partition: int, offset: int, start: int | None = None) -> range:
        """Offsets skipped before ``offset``: from the next expected one (or ``start`` for a
        partition not seen yet; nothing is known to be missing without either)."""
        expected = self._next.get((topic, partition), start)
        if expected is None or offset <= expected:
            return range(0)
        return range(expected, offset)

    def repeat(self, topic: str, partition: int, offset: int) -> bool:
        """Whether this worker already processed ``offset`` (delivered again after a rebalance)."""
        expected = self._next.get((topic, partition))
        return expected is not None and offset < expected

    def done(self, topic: str, partition: int, offset: int) -> None:
        """``offset`` was processed."""
        key = (topic, partition)
        self._next[key] = max(self._next.get(key, 0), offset + 1)

    def keep(self, assigned: set[tuple[str, int]]) -> None:
        """Forget the partitions this worker no longer owns (another worker reads them on)."""
        for key in [k for k in self._next if k not in assigned]:
            del self._next[key]
