"""The intent protocol as data: commit metadata, dedup tokens, and which committed intents replay."""

from __future__ import annotations

import pytest
from confluent_kafka import OFFSET_INVALID, TopicPartition
from hypothesis import given
from hypothesis import strategies as st

from sinks.intents import Intent, dedup_token, intent_metadata, parse_intent, resumed_intent

offsets = st.integers(min_value=0, max_value=2**62)


@given(offsets, offsets)
def test_intent_metadata_round_trips(first: int, last: int) -> None:
    assert parse_intent(intent_metadata(first, last)) == Intent(first, last)


@pytest.mark.parametrize(
    "metadata",
    [None, "", "darkscope-sink:", "darkscope-sink:12", "darkscope-sink:a-b", "other:1-2", "1-2"],
)
def test_metadata_that_is_not_an_intent_parses_to_none(metadata: str | None) -> None:
    assert parse_intent(metadata) is None


def test_a_committed_intent_replays_only_while_the_offset_is_where_it_starts() -> None:
    meta = intent_metadata(40, 47)
    assert resumed_intent(TopicPartition("t", 3, 40, metadata=meta)) == Intent(40, 47)
    # The final commit went through (offset last + 1, empty metadata): nothing to replay.
    assert resumed_intent(TopicPartition("t", 3, 48, metadata="")) is None
    # An intent left behind an offset that moved on (e.g. committed by hand) is not replayed.
    assert resumed_intent(TopicPartition("t", 3, 48, metadata=meta)) is None
    assert resumed_intent(TopicPartition("t", 3, OFFSET_INVALID, metadata="")) is None


def test_the_dedup_token_names_topic_partition_and_group() -> None:
    assert dedup_token("darkscope.enriched", 2, 40, 47) == "darkscope.enriched:2:40-47"
    # Distinct groups of one partition, and the same group of another partition, differ.
    tokens = {dedup_token("t", p, first, last) for p, first, last in [(0, 0, 3), (0, 4, 7), (1, 0, 3)]}
    assert len(tokens) == 3
