"""`darkscope alerts forward`: post every alert of the alerts topic to a webhook, none lost.

Delivery is at least once, with an idempotency key: a message's offset is committed only after
the webhook answered 2xx for it, so an alert is never skipped, and an alert posted but not yet
committed when the forwarder dies is posted again by the next one, with the same
``Idempotency-Key`` header (:func:`streams.alerts.record_key`) and the same body and signature.
A receiver that keeps the keys it has seen gets every alert exactly once.

While the webhook fails (no connection, a timeout, a 5xx, 408, 425 or 429) the forwarder seeks
back to the failed message and waits, doubling the wait up to ``max_backoff``: the partition does
not move on, and the next poll hands the same message back. A wait never outlasts the consumer's
poll interval (the settings cap it at 240 s of librdkafka's 300 s), so a long outage keeps the
partitions. Any other answer (a 4xx: the webhook refuses this body) cannot be fixed by retrying:
the alert is logged with where it was and passed over, as are undecodable messages and alerts
below ``min_severity``.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaException, TopicPartition

from core.errors import BrokerError, CodecError, UndecodableMessage
from core.kafka_security import client_config
from schemas.codec import Codec
from schemas.names import ALERT
from streams.alerts import SEVERITIES, record_key
from streams.webhook import Format, body, headers

__all__ = ["ForwardPlan", "ForwardStats", "backoff", "forward_alerts", "http_post"]

logger = logging.getLogger(__name__)

RETRYABLE = frozenset({408, 425, 429})


class Post(Protocol):
    """Posts ``data`` to ``url``; returns the HTTP status, raises OSError when no answer came."""

    def __call__(self, url: str, data: bytes, headers: dict[str, str], timeout: float) -> int: ...


def http_post(url: str, data: bytes, headers: dict[str, str], timeout: float) -> int:
    """One POST with the standard library; an HTTP error status is returned, not raised."""
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.read()
        return int(exc.code)


def backoff(attempt: int, first: float, cap: float) -> float:
    """Seconds to wait before retry ``attempt`` (0-based): doubling from ``first``, capped."""
    return float(min(cap, first * 2 ** min(attempt, 30)))


@dataclass(frozen=True)
class ForwardPlan:
    """Where alerts go and how (settings and options resolved)."""

    url: str
    fmt: Format = "json"
    secret: bytes | None = None
    min_severity: str = "info"
    timeout: float = 10.0
    first_backoff: float = 0.5
    max_backoff: float = 60.0


@dataclass
class ForwardStats:
    """What a run did."""

    delivered: int = 0
    passed_over: int = 0  # below min_severity
    refused: int = 0  # the webhook answered a 4xx that retrying cannot fix
    undecodable: int = 0
    retries: int = 0

    def line(self) -> str:
        """One line for the terminal."""
        return (
            f"delivered {self.delivered} alerts; {self.passed_over} below the severity floor, "
            f"{self.refused} refused by the webhook, {self.undecodable} undecodable, {self.retries} retries"
        )


def _commit(consumer: Consumer, topic: str, partition: int, offset: int) -> None:
    """Commit past one message. A failed commit is only logged: the message comes again, with
    the same idempotency key."""
    try:
        consumer.commit(offsets=[TopicPartition(topic, partition, offset + 1)], asynchronous=False)
    except KafkaException as exc:
        logger.warning(
            "commit of %s[%d]@%d failed (%s): it may be posted again", topic, partition, offset, exc
        )


def forward_alerts(
    bootstrap: str,
    topic: str,
    group_id: str,
    plan: ForwardPlan,
    *,
    limit: int = 0,
    idle_timeout: float = 0.0,
    stop: threading.Event | None = None,
    post: Post = http_post,
    clock: Callable[[], float] = time.monotonic,
) -> ForwardStats:
    """Post the alerts of ``topic`` from the group's committed offsets (the oldest for a new
    group) until ``stop`` is set, ``limit`` alerts were delivered or nothing came for
    ``idle_timeout`` seconds (0: never)."""
    stop = stop or threading.Event()
    codec, stats = Codec(), ForwardStats()
    floor = SEVERITIES.index(plan.min_severity)
    consumer = Consumer(
        client_config(
            bootstrap,
            {
                "group.id": group_id,
                # Static membership: a forwarder restarted on the same host takes its partitions
                # back at once, instead of waiting out the session of the one that died.
                "group.instance.id": f"{group_id}@{socket.gethostname()}",
                "client.id": f"darkscope-forward-{uuid.uuid4().hex[:6]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "logger": logging.getLogger("darkscope.kafka.consumer"),
            },
        )
    )
    assigned: list[TopicPartition] = []

    def on_assign(_: Consumer, partitions: list[TopicPartition]) -> None:
        assigned[:] = partitions

    consumer.subscribe([topic], on_assign=on_assign)
    attempt, last = 0, clock()
    try:
        while not stop.is_set() and not (limit and stats.delivered >= limit):
            msg = consumer.poll(0.5)
            if msg is None:
                if not assigned:  # idle means nothing left to read, not a group still forming
                    last = clock()
                elif idle_timeout and clock() - last > idle_timeout:
                    break
                continue
            error = msg.error()
            if error is not None:
                if error.fatal():  # e.g. fenced by a forwarder of the same group on this host
                    raise BrokerError(f"the forwarder's consumer cannot go on: {error.str()}")
                logger.warning("consumer error on %s: %s", topic, error)
                continue
            last = clock()
            partition, offset = msg.partition() or 0, msg.offset() or 0
            try:
                decoded = codec.decode(msg.value() or b"")
                if decoded.name != ALERT or decoded.record.get("severity") not in SEVERITIES:
                    raise UndecodableMessage(f"{decoded.name} is not an Alert record darkscope grades")
                alert: dict[str, Any] = decoded.record
            except CodecError as exc:
                logger.warning(
                    "undecodable alert at %s[%d]@%d passed over: %s", topic, partition, offset, exc
                )
                stats.undecodable += 1
                _commit(consumer, topic, partition, offset)
                continue
            if SEVERITIES.index(str(alert.get("severity", "info"))) < floor:
                stats.passed_over += 1
                _commit(consumer, topic, partition, offset)
                continue
            data = body(alert, plan.fmt)
            try:
                status: int | None = post(plan.url, data, headers(alert, data, plan.secret), plan.timeout)
                failure = f"HTTP {status}"
            except OSError as exc:  # refused, reset, timed out, DNS: no answer
                reason = getattr(exc, "reason", exc)  # urllib wraps the socket's error
                status, failure = None, f"{type(reason).__name__}: {reason}"
            if status is not None and 200 <= status < 300:
                stats.delivered += 1
                attempt = 0
                _commit(consumer, topic, partition, offset)
            elif status is not None and status < 500 and status not in RETRYABLE:
                logger.error(
                    "the webhook refused alert %s at %s[%d]@%d (%s): passed over",
                    record_key(alert),
                    topic,
                    partition,
                    offset,
                    failure,
                )
                stats.refused += 1
                _commit(consumer, topic, partition, offset)
            else:
                wait = backoff(attempt, plan.first_backoff, plan.max_backoff)
                logger.warning(
                    "posting %s[%d]@%d failed (%s): retry %d in %.1f s",
                    topic,
                    partition,
                    offset,
                    failure,
                    attempt + 1,
                    wait,
                )
                stats.retries += 1
                attempt += 1
                try:  # the next poll of this partition hands the same message back
                    consumer.seek(TopicPartition(topic, partition, offset))
                except KafkaException as exc:  # revoked meanwhile: its new owner starts there
                    logger.info("seek back on %s[%d] failed: %s", topic, partition, exc)
                stop.wait(wait)
                last = clock()
    finally:
        consumer.close()
    return stats
