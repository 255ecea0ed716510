"""Reading whole test topics back."""

from __future__ import annotations

from collections.abc import Iterator

from confluent_kafka import Message

from core.topics import read_range, watermarks


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
