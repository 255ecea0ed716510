"""Fuzz target ``enriched``: what the sink does with a message of ``darkscope.enriched``
(decode, check it is an EnrichedBatch, :func:`sinks.arrow.columns_from_record`)."""

from __future__ import annotations

from core.errors import UndecodableMessage
from fuzz._messages import seeds_for
from schemas.codec import Codec
from schemas.names import ENRICHED_BATCH
from sinks.arrow import columns_from_record

__all__ = ["check", "seeds"]

_CODEC = Codec()


def check(data: bytes) -> None:
    """Decode the message into the sink's columns."""
    msg = _CODEC.decode(data)
    if msg.name != ENRICHED_BATCH:
        raise UndecodableMessage(f"{msg.name} is not an EnrichedBatch")
    columns_from_record(_CODEC, msg.record)


def seeds() -> list[bytes]:
    """EnrichedBatch frames from the enricher, then one of every other schema."""
    return seeds_for(ENRICHED_BATCH)
