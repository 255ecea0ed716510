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

The decisions are pure functions of times and offsets (tested without Faust); the worker's
timer (:func:`streams.app.create_app`) feeds them and seeks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["STALL_AFTER_S", "held_too_long", "stalled_recovery"]

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
