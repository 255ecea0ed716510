"""Fuzz target ``pcapng``: pcapng captures through :func:`producers.capture.open_capture`
(sections, interfaces, every packet block type, skipped and unknown blocks, resync)."""

from __future__ import annotations

from fuzz._capture import read_capture
from fuzz.seeds import captures
from producers.pcapng import is_pcapng

__all__ = ["check", "seeds"]


def check(data: bytes) -> None:
    """Read the bytes as a capture to the end."""
    read_capture(data)


def seeds() -> list[bytes]:
    """pcapng files in both byte orders with several sections, interfaces and block types."""
    return [c for c in captures() if is_pcapng(c)]
