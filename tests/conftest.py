"""Session fixtures: a real Kafka broker (started when none answers) and unique topics."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from darkscope import broker as broker_mod
from darkscope.settings import BrokerSettings, KafkaSettings
from darkscope.topics import admin_client, ensure_topics

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


@pytest.fixture
def topic(kafka_bootstrap: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh 4-partition topic for one test, deleted afterwards."""
    name = f"test.{request.node.name[:40]}.{uuid.uuid4().hex[:8]}".replace("[", "_").replace("]", "_")
    ensure_topics(KafkaSettings(bootstrap=kafka_bootstrap), [name], partitions=4)
    yield name
    admin = admin_client(kafka_bootstrap)
    for fut in admin.delete_topics([name]).values():
        fut.result()
