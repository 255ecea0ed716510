"""Closed windows as data: :class:`WindowRows` (many windows of a kind as columns, one row per
window and value, the form the counting stages pass on) and :class:`ClosedWindow` (one window,
the view the alert rules and tests read)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["HOUR", "MINUTE", "NEVER", "SIZES", "ClosedWindow", "WindowRows"]

I64 = npt.NDArray[np.int64]
U32 = npt.NDArray[np.uint32]
U8 = npt.NDArray[np.uint8]

MINUTE, HOUR = 0, 1  # size codes of WindowRows
NEVER = -(2**62)  # a time before every window: nothing final, reported or corrected yet
SIZES = ("1m", "1h")


@dataclass(frozen=True, eq=False)
class WindowRows:
    """Closed windows of one kind as columns: one row per (window, value), sorted by size,
    start and value id; ``values`` is the dictionary the value ids index."""

    kind: str
    values: Sequence[str]
    size: U8
    start: I64
    vid: U32
    packets: I64
    sources: I64

    @staticmethod
    def empty(kind: str, values: Sequence[str] = ()) -> WindowRows:
        """No rows."""
        i = np.zeros(0, np.int64)
        return WindowRows(kind, values, np.zeros(0, np.uint8), i, np.zeros(0, np.uint32), i, i)

    def __len__(self) -> int:
        return len(self.start)

    @property
    def end(self) -> I64:
        """Exclusive end of each row's window, seconds."""
        return self.start + np.where(self.size == MINUTE, 60, 3600)

    def select(self, rows: npt.NDArray[Any]) -> WindowRows:
        """The rows picked by a mask or an index array."""
        return WindowRows(
            self.kind,
            self.values,
            self.size[rows],
            self.start[rows],
            self.vid[rows],
            self.packets[rows],
            self.sources[rows],
        )

    def windows(self) -> list[ClosedWindow]:
        """One :class:`ClosedWindow` per (size, start) (for the alert rules and tests)."""
        out = []
        names = np.asarray(self.values, dtype=object)
        first = np.ones(len(self), dtype=bool)
        first[1:] = (self.size[1:] != self.size[:-1]) | (self.start[1:] != self.start[:-1])
        bounds = [*np.flatnonzero(first).tolist(), len(self)]
        for a, b in itertools.pairwise(bounds):
            out.append(
                ClosedWindow(
                    self.kind,
                    SIZES[int(self.size[a])],
                    int(self.start[a]),
                    names[self.vid[a:b]].tolist() if b > a else [],
                    self.packets[a:b],
                    self.sources[a:b],
                )
            )
        return out


@dataclass(frozen=True, eq=False)
class ClosedWindow:
    """Final counts of one window, as columns: per value, packets and unique addresses."""

    kind: str
    size: str  # "1m" or "1h"
    start: int  # seconds since the epoch, UTC
    values: list[str]
    packets: I64
    sources: I64
    revision: int = 0  # 0 when first closed; n when late rows re-closed it for the n-th time

    @classmethod
    def of(
        cls, kind: str, size: str, start: int, counts: Mapping[str, tuple[int, int]], revision: int = 0
    ) -> ClosedWindow:
        """A window from ``value -> (packets, unique addresses)``."""
        pairs = list(counts.values())
        return cls(
            kind,
            size,
            start,
            list(counts),
            np.array([p for p, _ in pairs], np.int64),
            np.array([u for _, u in pairs], np.int64),
            revision,
        )

    @cached_property
    def counts(self) -> dict[str, tuple[int, int]]:
        """``value -> (packets, unique addresses)`` (built on first use: most windows are only
        stored, and their columns serialise without it)."""
        return dict(
            zip(self.values, zip(self.packets.tolist(), self.sources.tolist(), strict=True), strict=True)
        )

    @property
    def end(self) -> int:
        """Exclusive end, seconds since the epoch."""
        return self.start + (60 if self.size == "1m" else 3600)
