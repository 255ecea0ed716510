"""Read alerts back from Kafka as readable lines (`darkscope alerts tail`)."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

from confluent_kafka import Consumer

from core.errors import CodecError
from schemas.codec import Codec

__all__ = ["format_alert", "tail_alerts"]


def format_alert(a: dict[str, Any]) -> str:
    """One line: window, severity, kind, key, observed vs baseline, message."""
    start = a["window_start"].strftime("%Y-%m-%d %H:%M")
    return (
        f"{start}Z {a['severity'].upper():8} {a['kind']:20} {a['key']:18} "
        f"observed={a['observed']:g} baseline={a['baseline']:g} score={a['score']:g}  {a['message']}"
    )


def tail_alerts(
    bootstrap: str, topic: str, from_beginning: bool, limit: int = 0, idle_timeout: float = 0.0
) -> Iterator[str]:
    """Yield formatted alerts; undecodable messages are reported, not fatal."""
    codec = Codec()
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"darkscope-tail-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest" if from_beginning else "latest",
            "enable.auto.commit": False,
            "logger": logging.getLogger("darkscope.kafka.consumer"),
        }
    )
    consumer.subscribe([topic])
    seen = 0
    last = time.monotonic()
    try:
        while not limit or seen < limit:
            msg = consumer.poll(0.5)
            if msg is None:
                if idle_timeout and time.monotonic() - last > idle_timeout:
                    return
                continue
            last = time.monotonic()
            if msg.error():
                continue
            try:
                decoded = codec.decode(msg.value() or b"")
            except CodecError as exc:
                yield f"# undecodable message at {topic}[{msg.partition()}]@{msg.offset()}: {exc}"
                continue
            seen += 1
            yield format_alert(decoded.record)
    finally:
        consumer.close()
