"""Fuzz target ``packets``: what the worker's enrich agent does with a message of
``darkscope.packets`` (:meth:`schemas.codec.Codec.decode_packets`: a PacketBatch, or a
PacketEvent as a one-packet batch)."""

from __future__ import annotations

from fuzz._messages import seeds_for
from schemas.codec import Codec
from schemas.names import PACKET_BATCH, PACKET_EVENT

__all__ = ["check", "seeds"]

_CODEC = Codec()


def check(data: bytes) -> None:
    """Decode the message into a batch and read its timestamps, as enrichment starts."""
    batch = _CODEC.decode_packets(data)
    if len(batch):
        int(batch["ts"].max())


def seeds() -> list[bytes]:
    """PacketBatch and PacketEvent frames, then one of every other schema."""
    return seeds_for(PACKET_BATCH, PACKET_EVENT)
