"""How closed windows are written to the ``window_counts`` Faust table.

Keys are ``kind|size|start`` (UTF-8). Values are JSON with parallel columns:

- a 1-hour window: ``{"kind", "size": "1h", "start", "revision", "values": [...],
  "packets": [...], "sources": [...]}``, one table key per window;
- 1-minute windows are grouped per hour: the key ``kind|1m|<hour start>`` holds
  ``{"kind", "size": "1m", "start": <hour start>, "minutes": [<one object per closed minute,
  shaped like an hour window without kind and size>]}``, rewritten whenever more minutes of
  that hour close (or a late packet corrects one).

The table also holds one ``kind|replay`` key per kind: where a new owner of the kind's counts
partition starts re-reading it (:mod:`streams.takeover`); and ``victim|episodes``: how far
the merge stage closed backscatter episodes (:class:`streams.merge.WindowMerger`).

Why group minutes: every table write is a changelog message that Faust produces one at a
time; a replayed quarter closes hundreds of thousands of minute windows, and writing each
on its own made the count agent fall far behind the enrich agent ("producer buffer full").
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from streams.windows import SIZES, ClosedWindow

__all__ = ["MinuteBundles", "window_key", "window_value"]

_NUMPY = orjson.OPT_SERIALIZE_NUMPY


def window_key(kind: str, size: str, start: int) -> bytes:
    """Key of a window (or, for size ``1m``, of the hour of minutes starting at ``start``)."""
    return f"{kind}|{size}|{start}".encode()


def _columns(w: ClosedWindow) -> dict[str, object]:
    return {
        "start": w.start,
        "revision": w.revision,
        "values": w.values,
        "packets": w.packets,
        "sources": w.sources,
    }


def window_value(w: ClosedWindow) -> bytes:
    """The table value of one window."""
    return orjson.dumps({"kind": w.kind, "size": w.size, **_columns(w)}, option=_NUMPY)


class MinuteBundles:
    """Closed minute windows held per (kind, hour) so that an hour's minutes share one key."""

    def __init__(self, load: Callable[[bytes], bytes | None] | None = None) -> None:
        """No minutes yet. ``load`` reads a key back from the table: an hour that is not held
        here starts from the minutes the table already has for it (written by a previous
        owner of the kind, see :mod:`streams.takeover`), so that rewriting it loses none."""
        self._hours: dict[tuple[str, int], dict[int, bytes]] = {}
        self._load = load

    def _hour(self, kind: str, hour: int) -> dict[int, bytes]:
        minutes = self._hours.get((kind, hour))
        if minutes is None:
            minutes = self._hours[(kind, hour)] = {}
            stored = self._load(window_key(kind, "1m", hour)) if self._load is not None else None
            for m in orjson.loads(stored)["minutes"] if stored else []:
                minutes[int(m["start"])] = orjson.dumps(m)
        return minutes

    def writes(self, closed: list[ClosedWindow]) -> list[tuple[bytes, bytes]]:
        """Table writes (key, value) for windows just closed: one per hour window, and one per
        hour whose minutes changed (holding every closed minute of that hour so far)."""
        out: list[tuple[bytes, bytes]] = []
        touched: dict[tuple[str, int], None] = {}
        for w in closed:
            if w.size != "1m":
                out.append((window_key(w.kind, w.size, w.start), window_value(w)))
                continue
            hour = w.start - w.start % 3600
            self._hour(w.kind, hour)[w.start] = orjson.dumps(_columns(w), option=_NUMPY)
            touched[(w.kind, hour)] = None
        for kind, hour in touched:
            out.append(self._bundle(kind, hour))
        return out

    def writes_rows(
        self,
        kind: str,
        names: npt.NDArray[np.object_],
        columns: tuple[npt.NDArray[Any], ...],
        revisions: npt.NDArray[np.int64] | None = None,
    ) -> list[tuple[bytes, bytes]]:
        """:meth:`writes` of windows given as columns (size code, start, value id, packets,
        sources), sorted by size and start; ``names`` maps value ids to values; revisions per
        row (None: all 0)."""
        size, start, vid, packets, sources = columns
        out: list[tuple[bytes, bytes]] = []
        touched: dict[int, None] = {}
        first = np.ones(len(start), dtype=bool)
        first[1:] = (size[1:] != size[:-1]) | (start[1:] != start[:-1])
        bounds = [*np.flatnonzero(first).tolist(), len(start)]
        labels = names[vid].tolist()
        starts, sizes = start.tolist(), size.tolist()
        for a, b in itertools.pairwise(bounds):
            w = {
                "start": starts[a],
                "revision": int(revisions[a]) if revisions is not None else 0,
                "values": labels[a:b],
                "packets": packets[a:b],
                "sources": sources[a:b],
            }
            if SIZES[sizes[a]] == "1h":
                out.append(
                    (
                        window_key(kind, "1h", starts[a]),
                        orjson.dumps({"kind": kind, "size": "1h", **w}, option=_NUMPY),
                    )
                )
                continue
            hour = starts[a] - starts[a] % 3600
            self._hour(kind, hour)[starts[a]] = orjson.dumps(w, option=_NUMPY)
            touched[hour] = None
        for hour in touched:
            out.append(self._bundle(kind, hour))
        return out

    def _bundle(self, kind: str, hour: int) -> tuple[bytes, bytes]:
        minutes = self._hours[(kind, hour)]
        head = orjson.dumps({"kind": kind, "size": "1m", "start": hour})[:-1]
        body = b",".join(minutes[m] for m in sorted(minutes))
        return window_key(kind, "1m", hour), head + b',"minutes":[' + body + b"]}"

    def forget(self, kind: str, horizon_s: int) -> None:
        """Drop the hours of ``kind`` that end before ``horizon_s`` (no longer correctable)."""
        for key in [k for k in self._hours if k[0] == kind and k[1] + 3600 <= horizon_s]:
            del self._hours[key]

    def drop(self, kind: str) -> None:
        """Forget every hour of ``kind`` (its counts partition moved to another worker)."""
        for key in [k for k in self._hours if k[0] == kind]:
            del self._hours[key]

    def __len__(self) -> int:
        return sum(len(m) for m in self._hours.values())
