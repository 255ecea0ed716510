"""Fuzz target ``records``: the per-record messages, Alert (``darkscope alerts tail``),
SensorHealth (the sink, from ``darkscope.sensors``) and DeadLetter, through
:meth:`schemas.codec.Codec.decode`."""

from __future__ import annotations

from fuzz._messages import seeds_for
from schemas.codec import Codec
from schemas.names import ALERT, DEAD_LETTER, SENSOR_HEALTH
from streams.alert_reader import format_alert

__all__ = ["check", "seeds"]

_CODEC = Codec()


def check(data: bytes) -> None:
    """Decode the frame; an Alert is formatted as the tail command prints it."""
    msg = _CODEC.decode(data)
    if msg.name == ALERT:
        format_alert(msg.record)


def seeds() -> list[bytes]:
    """Alert, SensorHealth and DeadLetter frames, then one of every other schema."""
    return seeds_for(ALERT, SENSOR_HEALTH, DEAD_LETTER)
