"""Inserts run on one worker thread and are finished, oldest first, on the caller's thread.

The sink's loop hands an insert over and goes on reading, decoding and encoding the next group
while it runs (chDB and the ClickHouse client release the GIL during an insert). What must
follow a stored insert — dead letters, the offset commit — is its ``then``, run on the loop's
thread by one of the ``finish_*`` methods, in the order the inserts were handed over. At most
``depth`` inserts are in hand: handing over one more first finishes the oldest.

An insert that raises ends it: the exception comes out of the ``finish_*`` call, its ``then``
never runs, and :meth:`Inserter.close` drops the inserts still in hand without running theirs.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

__all__ = ["Inserter"]


@dataclass(frozen=True)
class _InHand:
    future: Future[None]
    then: Callable[[], None]
    key: Hashable


class Inserter:
    """One worker thread for inserts, and the inserts in hand, oldest first."""

    def __init__(self, depth: int = 2, name: str = "darkscope-insert") -> None:
        """At most ``depth`` inserts in hand (one running, the others waiting)."""
        self.depth = depth
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._in_hand: deque[_InHand] = deque()

    def __len__(self) -> int:
        return len(self._in_hand)

    def make_room(self) -> None:
        """Finish the oldest inserts until one more can be handed over."""
        while len(self._in_hand) >= self.depth:
            self.finish_oldest()

    def hand_over(self, insert: Callable[[], None], then: Callable[[], None], key: Hashable = None) -> None:
        """Run ``insert`` on the worker thread after those in hand; ``then`` once it has succeeded."""
        self.make_room()
        self._in_hand.append(_InHand(self._thread.submit(insert), then, key))

    def finish_oldest(self) -> None:
        """Wait for the oldest insert in hand, then run its ``then`` (its exception, if it failed)."""
        job = self._in_hand.popleft()
        job.future.result()
        job.then()

    def finish_done(self) -> None:
        """Finish the inserts that are done, up to the first still running."""
        while self._in_hand and self._in_hand[0].future.done():
            self.finish_oldest()

    def finish_key(self, key: Hashable) -> None:
        """Finish inserts, oldest first, until none handed over with ``key`` is left."""
        while any(job.key == key for job in self._in_hand):
            self.finish_oldest()

    def finish_all(self) -> None:
        """Finish every insert in hand."""
        while self._in_hand:
            self.finish_oldest()

    def close(self) -> None:
        """Drop the inserts in hand without their ``then`` and wait for the running one to end."""
        self._in_hand.clear()
        self._thread.shutdown(wait=True, cancel_futures=True)
