"""Read alerts back from Kafka as readable lines (`darkscope alerts tail`)."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

from confluent_kafka import Consumer

from core.errors import CodecError, UndecodableMessage
from core.kafka_security import client_config
from schemas.codec import Codec
from schemas.names import ALERT

__all__ = ["format_alert", "tail_alerts"]


def format_alert(a: dict[str, Any]) -> str:
    """One line: window, severity, kind (and an episode's state), key, observed vs baseline,
    message."""
    start = a["window_start"].strftime("%Y-%m-%d %H:%M")
    state = (a.get("evidence") or {}).get("state", "event")
    kind = a["kind"] if state == "event" else f"{a['kind']} {state}"
    return (
        f"{start}Z {a['severity'].upper():8} {kind:20} {a['key']:18} "
        f"observed={a['observed']:g} baseline={a['baseline']:g} score={a['score']:g}  {a['message']}"
    )


def tail_alerts(
    bootstrap: str, topic: str, from_beginning: bool, limit: int = 0, idle_timeout: float = 0.0
) -> Iterator[str]:
    """Yield formatted alerts; undecodable messages are reported, not fatal."""
    codec = Codec()
    consumer = Consumer(
        client_config(
            bootstrap,
            {
                "group.id": f"darkscope-tail-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest" if from_beginning else "latest",
                "enable.auto.commit": False,
                "logger": logging.getLogger("darkscope.kafka.consumer"),
            },
        )
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
                if decoded.name != ALERT:
                    raise UndecodableMessage(f"{decoded.name} is not an Alert record")
            except CodecError as exc:
                yield f"# undecodable message at {topic}[{msg.partition()}]@{msg.offset()}: {exc}"
                continue
            seen += 1
            yield format_alert(decoded.record)
    finally:
        consumer.close()
