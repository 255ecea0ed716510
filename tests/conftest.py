"""Session fixtures: a real Kafka broker (started when none answers) and unique topics."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from core import broker as broker_mod
from core.settings import BrokerSettings, KafkaSettings, TopicNames
from core.topics import admin_client, ensure_topics

REPO = Path(__file__).resolve().parent.parent
# The tests' own broker listens apart from a developer's demo broker (9092).
TEST_PORT = int(os.environ.get("DARKSCOPE_TEST_BROKER_PORT", "19092"))


def broker_settings_for_tests() -> BrokerSettings:
    """Settings of the broker the test session starts when none is given."""
    return BrokerSettings(port=TEST_PORT, data_dir=REPO / ".darkscope" / "test-kafka")


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap address of a live broker: DARKSCOPE_TEST_BOOTSTRAP, or one started here."""
    given = os.environ.get("DARKSCOPE_TEST_BOOTSTRAP")
    if given:
        yield given
        return
    settings = broker_settings_for_tests()
    status, started = broker_mod.start(settings)
    try:
        yield status.bootstrap
    finally:
        if started and not os.environ.get("DARKSCOPE_TEST_KEEP_BROKER"):
            broker_mod.stop(settings)


def _unique(request: pytest.FixtureRequest, what: str) -> str:
    base = "".join(c if c.isalnum() or c in "-_" else "_" for c in request.node.name[:40])
    return f"test.{base}.{what}.{uuid.uuid4().hex[:8]}"


def _drop(bootstrap: str, names: list[str]) -> None:
    admin = admin_client(bootstrap)
    for fut in admin.delete_topics(names).values():
        fut.result()


@pytest.fixture
def topic(kafka_bootstrap: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh 4-partition topic for one test, deleted afterwards."""
    name = _unique(request, "t")
    ensure_topics(KafkaSettings(bootstrap=kafka_bootstrap), [name], partitions=4)
    yield name
    _drop(kafka_bootstrap, [name])


@pytest.fixture
def topic_names(kafka_bootstrap: str, request: pytest.FixtureRequest) -> Iterator[TopicNames]:
    """A fresh set of darkscope topics (4 partitions each) for one test."""
    names = TopicNames(**{field: _unique(request, field) for field in TopicNames.model_fields})
    ensure_topics(KafkaSettings(bootstrap=kafka_bootstrap, partitions=4), names.all())
    yield names
    _drop(kafka_bootstrap, names.all())
