"""Progress bars (rich) for `darkscope simulate`: one bar per simulated quarter.

The simulator reports ``progress(quarter, packets_so_far)`` after each batch, counting over
the whole run; :class:`QuarterBars` turns that into one bar per quarter, sized by the
expected volume (packets a day times days) and closed at the count actually simulated.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["QuarterBars", "quarter_bars"]


class QuarterBars:
    """A ``progress(quarter, packets_so_far)`` hook drawing one rich bar per quarter."""

    def __init__(self, progress: Progress, expected: Mapping[str, int]) -> None:
        self._progress = progress
        self._tasks: dict[str, TaskID] = {
            q: progress.add_task(f"simulate {q}", total=n) for q, n in expected.items()
        }
        self._current: str | None = None
        self._offset = 0  # packets of the quarters before the current one
        self._seen = 0

    def __call__(self, quarter: str, packets: int) -> None:
        """Record that ``packets`` packets are simulated so far, the last of them in ``quarter``."""
        if quarter != self._current:
            self._finish()
            self._current, self._offset = quarter, self._seen
            if quarter not in self._tasks:
                self._tasks[quarter] = self._progress.add_task(f"simulate {quarter}", total=None)
        self._seen = packets
        self._progress.update(self._tasks[quarter], completed=packets - self._offset)

    def _finish(self) -> None:
        if self._current is not None:
            done = self._seen - self._offset
            self._progress.update(self._tasks[self._current], total=done, completed=done)

    def close(self) -> None:
        """Close the current quarter's bar at the count actually simulated."""
        self._finish()


@contextmanager
def quarter_bars(expected: Mapping[str, int], console: Console | None = None) -> Iterator[QuarterBars]:
    """Bars for the quarters in ``expected`` (quarter -> expected packets), on stderr by default."""
    with Progress(
        TextColumn("{task.description:<16}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("packets"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console or Console(stderr=True),
    ) as progress:
        bars = QuarterBars(progress, expected)
        try:
            yield bars
        finally:
            bars.close()
