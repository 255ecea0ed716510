"""Session fixtures: a real Kafka broker (started when none answers) and unique topics.

Every test that reaches the broker (through ``kafka_bootstrap``, ``topic`` or ``topic_names``)
carries the ``broker`` marker, so that ``pytest -m "not broker"`` runs without Kafka: a test
that uses the broker unmarked fails before the broker is started or asked for.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from core import broker as broker_mod
from core.settings import BrokerSettings, KafkaSettings, TopicNames
from core.topics import ensure_topics
from tests.kafka_helpers import drop_topics, fresh_topic_names, unique_topic_name

REPO = Path(__file__).resolve().parent.parent
# The tests' own broker listens apart from a developer's demo broker (9092).
TEST_PORT = int(os.environ.get("DARKSCOPE_TEST_BROKER_PORT", "19092"))


def broker_settings_for_tests() -> BrokerSettings:
    """Settings of the broker the test session starts when none is given."""
    return BrokerSettings(port=TEST_PORT, data_dir=REPO / ".darkscope" / "test-kafka")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Fail a test that would use the broker without the ``broker`` marker, before any fixture."""
    uses = "kafka_bootstrap" in getattr(item, "fixturenames", ())
    if uses and item.get_closest_marker("broker") is None:
        pytest.fail(
            f"{item.nodeid} uses the broker (kafka_bootstrap) without @pytest.mark.broker; mark it, "
            "so that `pytest -m 'not broker'` runs without Kafka",
            pytrace=False,
        )


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
    name = unique_topic_name(request.node.name, "t")
    ensure_topics(KafkaSettings(bootstrap=kafka_bootstrap), [name], partitions=4)
    yield name
    drop_topics(kafka_bootstrap, [name])


@pytest.fixture
def topic_names(kafka_bootstrap: str, request: pytest.FixtureRequest) -> Iterator[TopicNames]:
    """A fresh set of darkscope topics (4 partitions each) for one test."""
    with fresh_topic_names(kafka_bootstrap, request.node.name) as names:
        yield names
