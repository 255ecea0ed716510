"""Fuzz target ``pcap``: classic pcap captures through :func:`producers.capture.open_capture`
(the pcap record indexer and its resynchronisation, chunking, the packet decoder)."""

from __future__ import annotations

from fuzz._capture import read_capture
from fuzz.seeds import captures
from producers.pcap import is_pcap

__all__ = ["check", "seeds"]


def check(data: bytes) -> None:
    """Read the bytes as a capture to the end."""
    read_capture(data)


def seeds() -> list[bytes]:
    """pcap files of every link type, both byte orders and resolutions, one with a corrupt length."""
    return [c for c in captures() if is_pcap(c)]
