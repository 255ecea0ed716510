"""The sink's intents: what it commits around an insert so that a crash never counts twice.

Kafka delivers at least once and a ClickHouse insert is not part of a Kafka commit, so a sink
that dies between storing a run of messages and committing their offsets must find, when it
(or another sink) resumes the partition, exactly which messages that insert held:

- A *group* is a run of offsets ``first..last`` of one partition, inserted as one block.
- Before inserting it, the sink commits the group's *intent*: the partition's offset stays at
  ``first`` and the commit metadata says ``darkscope-sink:first-last`` (:func:`intent_metadata`).
- It inserts with the deduplication token ``topic:partition:first-last`` (:func:`dedup_token`),
  and finally commits ``last + 1`` with empty metadata.
- Whoever resumes the partition reads the committed offset and metadata; when the offset is
  where the intent starts (:func:`resumed_intent`), it rebuilds exactly that group, whatever its
  own batch size, so the token is the same and ClickHouse drops the block it already has, in
  ``packets`` and in every rollup. Any other committed offset means the group was finished (or
  never started), and grouping is free again.

These are pure functions of offsets and strings; :mod:`sinks.loop` commits and inserts them.
"""

from __future__ import annotations

from typing import NamedTuple

from confluent_kafka import TopicPartition

__all__ = ["INTENT_PREFIX", "Intent", "dedup_token", "intent_metadata", "parse_intent", "resumed_intent"]

INTENT_PREFIX = "darkscope-sink:"


class Intent(NamedTuple):
    """The offsets ``first..last`` (both included) of a group of one partition."""

    first: int
    last: int


def intent_metadata(first: int, last: int) -> str:
    """The commit metadata that announces the group ``first..last``."""
    return f"{INTENT_PREFIX}{first}-{last}"


def parse_intent(metadata: str | None) -> Intent | None:
    """The (first, last) offsets of a committed group intent, or None."""
    if not metadata or not metadata.startswith(INTENT_PREFIX):
        return None
    try:
        first, last = metadata[len(INTENT_PREFIX) :].split("-", 1)
        return Intent(int(first), int(last))
    except ValueError:
        return None


def resumed_intent(committed: TopicPartition) -> Intent | None:
    """The group a partition's new owner must rebuild: the committed intent, when the committed
    offset is still where it starts (otherwise its final commit went through)."""
    intent = parse_intent(committed.metadata)
    if intent is not None and committed.offset == intent.first:
        return intent
    return None


def dedup_token(topic: str, partition: int, first: int, last: int) -> str:
    """The insert deduplication token of the group ``first..last`` of ``topic[partition]``."""
    return f"{topic}:{partition}:{first}-{last}"
