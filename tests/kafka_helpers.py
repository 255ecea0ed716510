"""Test topics: fresh ones named after the test, dropped afterwards, and read whole."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from confluent_kafka import Message

from core.settings import KafkaSettings, TopicNames
from core.topics import admin_client, ensure_topics, read_range, watermarks


def unique_topic_name(label: str, what: str) -> str:
    """A topic name no other test uses: ``test.<label>.<what>.<random>``."""
    base = "".join(c if c.isalnum() or c in "-_" else "_" for c in label[:40])
    return f"test.{base}.{what}.{uuid.uuid4().hex[:8]}"


def drop_topics(bootstrap: str, names: list[str]) -> None:
    """Delete ``names`` and wait until the broker has."""
    admin = admin_client(bootstrap)
    for fut in admin.delete_topics(names).values():
        fut.result()


@contextmanager
def fresh_topic_names(bootstrap: str, label: str) -> Iterator[TopicNames]:
    """A fresh set of darkscope topics (4 partitions each) named after ``label``, deleted afterwards."""
    names = TopicNames(**{field: unique_topic_name(label, field) for field in TopicNames.model_fields})
    ensure_topics(KafkaSettings(bootstrap=bootstrap, partitions=4), names.all())
    try:
        yield names
    finally:
        drop_topics(bootstrap, names.all())


def read_all(bootstrap: str, topic: str, timeout: float = 60.0) -> Iterator[Message]:
    """Every message currently in ``topic``."""
    marks = watermarks(bootstrap, topic)
    yield from read_range(
        bootstrap,
        topic,
        {p: lo for p, (lo, _) in marks.items()},
        {p: hi for p, (_, hi) in marks.items()},
        timeout,
    )
