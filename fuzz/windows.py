"""Fuzz target ``windows``: what the worker's merge agent does with a message of
``darkscope.windows`` (:func:`schemas.windowcounts.decode_window_counts`)."""

from __future__ import annotations

from fuzz._messages import seeds_for
from schemas.codec import Codec
from schemas.names import WINDOW_COUNTS
from schemas.windowcounts import decode_window_counts

__all__ = ["check", "seeds"]

_CODEC = Codec()


def check(data: bytes) -> None:
    """Decode the WindowCounts frame and list its closed windows."""
    decode_window_counts(_CODEC, data).rows.windows()


def seeds() -> list[bytes]:
    """A WindowCounts frame, then one frame of every other schema."""
    return seeds_for(WINDOW_COUNTS)
