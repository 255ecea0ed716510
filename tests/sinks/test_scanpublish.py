"""Publishing ended scan events from a real chDB store: through a fake producer, and through the
real broker with `darkscope scans publish`."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from core.errors import BrokerError
from core.publisher import DeliveryStats
from core.settings import TopicNames
from darkscope.cli import main
from schemas.codec import Codec
from schemas.names import SCAN_EVENT
from sinks.scanpublish import publish_ended
from sinks.store import Store
from tests.kafka_helpers import read_all
from tests.sinks.packets import Pkt, insert_packets

T0 = datetime(2022, 4, 2, 8, tzinfo=UTC)
CODEC = Codec()


class FakePublisher:
    """Queues on send, delivers (or fails) everything on flush, as the real one reports."""

    def __init__(self, fail: bool = False) -> None:
        self.stats = DeliveryStats()
        self.fail = fail
        self.queued: list[tuple[str, bytes | None, bytes]] = []
        self.delivered: list[tuple[str, bytes | None, bytes]] = []

    def send(self, topic: str, value: bytes, packets: int = 1, key: bytes | None = None) -> None:
        self.queued.append((topic, key, value))

    def flush(self, timeout: float = 60.0) -> None:
        if self.fail:
            self.stats.messages_failed += len(self.queued)
        else:
            self.stats.messages_sent += len(self.queued)
            self.delivered += self.queued
        self.queued = []

    def records(self) -> list[dict[str, Any]]:
        out = []
        for _topic, key, value in self.delivered:
            msg = CODEC.decode(value)
            assert msg.name == SCAN_EVENT
            assert key == msg.record["source"].encode()
            out.append(msg.record)
        return out


def _burst(src: str, at: datetime, n: int, **kw: Any) -> list[Pkt]:
    return [
        Pkt(at + timedelta(seconds=i), src, dst=f"198.51.100.{i + 1}", dport=23 + i % 2, **kw)
        for i in range(n)
    ]


def test_an_ended_scan_is_published_once_and_an_open_one_only_after_it_ends(tmp_path: Path) -> None:
    publisher = FakePublisher()
    with Store.open(f"chdb://{tmp_path / 'store'}") as store:
        store.migrate()
        assert publish_ended(store, publisher, "scans", 600).published == 0  # nothing stored yet
        insert_packets(store, _burst("1.0.0.1", T0, 5, region="JP", sensor="tokyo-1", fp_verdict=1))
        insert_packets(store, _burst("1.0.0.2", T0 + timedelta(minutes=30), 3))  # newest: still open
        first = publish_ended(store, publisher, "scans", 600)
        assert first.published == 1
        [a] = publisher.records()
        assert a["source"] == "1.0.0.1" and a["protocol"] == 6 and a["packets"] == 5
        assert a["start"] == T0 and a["end"] == T0 + timedelta(seconds=4)
        assert (a["destinations"], a["ports"], a["fp_verdict"]) == (5, 2, 1)
        assert (a["region"], a["sensors"], a["asn"], a["idle"]) == ("JP", ["tokyo-1"], 64500, 600)
        assert a["id"] == f"1.0.0.1/6/{int(T0.timestamp() * 1000)}"
        assert first.ended_before == T0 + timedelta(minutes=30, seconds=2) - timedelta(seconds=600)

        again = publish_ended(store, publisher, "scans", 600)
        assert again.published == 0 and len(publisher.delivered) == 1

        insert_packets(store, _burst("1.0.0.3", T0 + timedelta(hours=2), 2))  # ends 1.0.0.2's scan
        later = publish_ended(store, publisher, "scans", 600)
        assert later.published == 1 and later.mark_before == first.mark_after
        assert [r["source"] for r in publisher.records()] == ["1.0.0.1", "1.0.0.2"]
        assert publisher.records()[1]["packets"] == 3


def test_a_failed_delivery_keeps_the_mark_so_the_next_run_publishes_the_events_again(tmp_path: Path) -> None:
    with Store.open(f"chdb://{tmp_path / 'store'}") as store:
        store.migrate()
        insert_packets(store, _burst("1.0.0.1", T0, 4) + _burst("1.0.0.2", T0 + timedelta(hours=1), 1))
        with pytest.raises(BrokerError, match="not acknowledged"):
            publish_ended(store, FakePublisher(fail=True), "scans", 600)
        retry = FakePublisher()
        assert publish_ended(store, retry, "scans", 600).published == 1
        assert [r["source"] for r in retry.records()] == ["1.0.0.1"]


@pytest.mark.broker
def test_scans_publish_puts_each_ended_scan_on_the_topic_once_keyed_by_source(
    kafka_bootstrap: str, topic_names: TopicNames, tmp_path: Path
) -> None:
    dsn = f"chdb://{tmp_path / 'store'}"
    with Store.open(dsn) as store:
        store.migrate()
        insert_packets(store, _burst("1.0.0.1", T0, 5) + _burst("1.0.0.2", T0 + timedelta(minutes=3), 2))
        insert_packets(store, _burst("1.0.0.3", T0 + timedelta(hours=1), 3))  # the newest: still open
    runner = CliRunner()
    env = {"DARKSCOPE_TOPIC_SCANS": topic_names.scans}
    args = ["scans", "publish", "--dsn", dsn, "--bootstrap", kafka_bootstrap]
    first = runner.invoke(main, args, env=env)
    assert first.exit_code == 0, first.output
    assert f"2 scan events published to {topic_names.scans} (idle timeout 600 s)" in first.output
    assert "every scan that ended before 2022-04-02 08:50:02 is on the topic" in first.output
    again = runner.invoke(main, args, env=env)
    assert again.exit_code == 0 and "0 scan events published" in again.output

    messages = list(read_all(kafka_bootstrap, topic_names.scans))
    records = {}
    for m in messages:
        record = CODEC.decode(m.value() or b"").record
        assert m.key() == record["source"].encode()
        records[record["id"]] = record
    assert len(messages) == len(records) == 2
    assert sorted((r["source"], r["packets"], r["end"]) for r in records.values()) == [
        ("1.0.0.1", 5, T0 + timedelta(seconds=4)),
        ("1.0.0.2", 2, T0 + timedelta(minutes=3, seconds=1)),
    ]


@pytest.mark.broker
def test_scans_publish_follow_runs_again_until_interrupted(
    kafka_bootstrap: str, topic_names: TopicNames, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dsn = f"chdb://{tmp_path / 'store'}"
    with Store.open(dsn) as store:
        store.migrate()
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 1:  # new packets between the first and the second run
            with Store.open(dsn) as store:
                insert_packets(
                    store, _burst("1.0.0.1", T0, 2) + _burst("1.0.0.2", T0 + timedelta(hours=1), 1)
                )
            return
        raise KeyboardInterrupt

    monkeypatch.setattr(time, "sleep", sleep)
    result = CliRunner().invoke(
        main,
        ["scans", "publish", "--follow", "--every", "5", "--dsn", dsn, "--bootstrap", kafka_bootstrap],
        env={"DARKSCOPE_TOPIC_SCANS": topic_names.scans},
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("0 scan events published") and "no scan has ended yet" in lines[0]
    assert lines[1].startswith("1 scan events published") and lines[2] == "stopped"
    assert sleeps == [5.0, 5.0]
    monkeypatch.undo()  # the reader below may sleep while a partition's leader settles
    assert len(list(read_all(kafka_bootstrap, topic_names.scans))) == 1
