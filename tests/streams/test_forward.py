"""`darkscope alerts forward`: signed posts to a real local HTTP server, through the real broker,
across an endpoint outage and a forwarder crash."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from core.topics import watermarks
from schemas.codec import Codec
from streams.alerts import record_key
from streams.forward import ForwardPlan, backoff, forward_alerts
from streams.webhook import body, headers, sign, verify
from tests.sinks.conftest import health_record
from tests.streams.harness import REPO
from tests.streams.test_alerts import hours, minutes, run

SECRET = b"s3cret-for-tests"


def raised_alerts() -> list[dict[str, Any]]:
    """Alerts as the detector raises them: a surge, and backscatter episodes opened, updated
    and closed (records that share an alert id)."""
    surge = run(hours({"23/tcp": [100] * 8 + [2_500]}))
    episodes = []
    for i in range(12):
        per_minute = [40, 40, 40, 200, 300, 400, 0] if i % 3 == 0 else [50] * (3 + i % 4) + [0]
        victim = f"203.0.113.{10 + i}"
        episodes += run(
            minutes(per_minute, start=1_648_771_200 + 600 * i, victim=victim),
            backscatter_warning_pps=20e6,
            backscatter_critical_pps=40e6,
        )
    alerts = surge + [a for a in episodes if a["kind"] == "backscatter_episode"]
    keys = [record_key(a) for a in alerts]
    assert len(keys) == len(set(keys)) and len({a["alert_id"] for a in alerts}) < len(alerts)
    return alerts


# The body, its signature and its keys ---------------------------------------------------------


def test_the_signature_is_the_hmac_of_the_exact_body_and_a_changed_byte_fails_it() -> None:
    alert = raised_alerts()[0]
    data = body(alert)
    h = headers(alert, data, SECRET)
    assert h["X-Darkscope-Signature"] == sign(SECRET, data) and h["X-Darkscope-Signature"].startswith(
        "sha256="
    )
    assert verify(SECRET, data, h["X-Darkscope-Signature"])
    assert not verify(SECRET, data.replace(b"23/tcp", b"24/tcp"), h["X-Darkscope-Signature"])
    assert not verify(b"another secret", data, h["X-Darkscope-Signature"])
    assert "X-Darkscope-Signature" not in headers(alert, data, None)


def test_an_episodes_records_share_the_alert_id_and_differ_in_idempotency_key() -> None:
    records = [a for a in raised_alerts() if a["key"] == "203.0.113.10"]
    assert [a["evidence"]["state"] for a in records] == ["open", "update", "update", "close"]
    hs = [headers(a, body(a), SECRET) for a in records]
    assert len({h["X-Darkscope-Alert-Id"] for h in hs}) == 1
    assert len({h["Idempotency-Key"] for h in hs}) == 4


def test_the_json_body_is_the_record_and_the_slack_body_is_a_slack_message() -> None:
    alert = raised_alerts()[0]
    doc = json.loads(body(alert))
    assert doc["alert_id"] == alert["alert_id"] and doc["window_start"].endswith("Z")
    assert doc["evidence"] == alert["evidence"]
    slack = json.loads(body(alert, "slack"))
    assert alert["message"] in slack["text"] and slack["blocks"][0]["type"] == "section"
    assert alert["alert_id"] in json.dumps(slack["blocks"])


def test_the_backoff_doubles_up_to_its_cap() -> None:
    assert [backoff(a, 0.5, 6.0) for a in range(6)] == [0.5, 1.0, 2.0, 4.0, 6.0, 6.0]
    assert backoff(10_000, 0.5, 60.0) == 60.0


# A real webhook -------------------------------------------------------------------------------


@dataclass
class Receiver:
    """A webhook on 127.0.0.1 that keeps every post; it can go down (connection refused) and
    come back on the same port, and answer a number of posts with an error first."""

    port: int = 0
    fail_next: int = 0  # posts answered 503 before the next 200s
    status: int = 200
    crash_at: int = 0  # on this post (counting from 1), call ``crash`` before answering
    crash: Callable[[], None] | None = None
    posts: list[tuple[dict[str, str], bytes, int]] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def up(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver._lock:
                    status = 503 if receiver.fail_next > 0 else receiver.status
                    receiver.fail_next = max(0, receiver.fail_next - 1)
                    receiver.posts.append((dict(self.headers.items()), data, status))
                    crash = receiver.crash if len(receiver.posts) == receiver.crash_at else None
                if crash is not None:  # the alert is taken, the forwarder dies before the answer
                    crash()
                    return
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def down(self) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()
        self._server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def delivered(self) -> list[tuple[dict[str, str], bytes]]:
        with self._lock:
            return [(h, d) for h, d, status in self.posts if status == 200]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.up()
    yield r
    if r._server is not None:
        r.down()


def _produce(bootstrap: str, topic: str, alerts: list[dict[str, Any]]) -> None:
    codec, producer = Codec(), Producer({"bootstrap.servers": bootstrap})
    for a in alerts:  # keyed by the alert's key, as the worker sends them
        producer.produce(topic, codec.encode("darkscope.Alert", a), key=a["key"].encode())
    producer.produce(topic, b"not an alert", key=b"garbage")
    producer.flush(30)


def _committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        tps = consumer.committed([TopicPartition(topic, p) for p in range(4)], timeout=10)
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in tps}


def _forwarder(bootstrap: str, topic: str, group: str, url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DARKSCOPE_BOOTSTRAP": bootstrap,
        "DARKSCOPE_TOPIC_ALERTS": topic,
        "DARKSCOPE_FORWARD_GROUP_ID": group,
        "DARKSCOPE_FORWARD_SECRET": SECRET.decode(),
        "DARKSCOPE_FORWARD_MAX_BACKOFF": "1",
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "darkscope", "-v", "alerts", "forward", "--url", url, "--timeout", "4"],
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


@pytest.mark.broker
def test_every_alert_is_delivered_across_an_outage_and_a_crash_and_every_duplicate_has_its_key(
    kafka_bootstrap: str, topic: str, receiver: Receiver, tmp_path: Path
) -> None:
    alerts = raised_alerts()
    _produce(kafka_bootstrap, topic, alerts)
    group, log = f"forward-{topic}", tmp_path / "forward.log"
    first = _forwarder(kafka_bootstrap, topic, group, receiver.url, log)
    # The forwarder crashes (SIGKILL) after the webhook took an alert, before it answered:
    # that alert was delivered, and its offset cannot have been committed.
    receiver.crash_at, receiver.crash = len(alerts) // 3, lambda: first.send_signal(signal.SIGKILL)
    assert first.wait(120) == -signal.SIGKILL
    receiver.down()  # the webhook is down when the forwarder comes back ...
    before_crash = len(receiver.delivered())
    assert before_crash == len(alerts) // 3
    second = _forwarder(kafka_bootstrap, topic, group, receiver.url, log)
    time.sleep(4)
    assert second.poll() is None, "the forwarder gave up while the webhook was down"
    assert len(receiver.delivered()) == before_crash
    receiver.fail_next = 3  # ... and answers 503 a few times when it is back
    receiver.up()
    assert second.wait(120) == 0, log.read_text()
    output = log.read_text()
    assert "retry" in output and "ConnectionRefusedError" in output and "HTTP 503" in output

    delivered = receiver.delivered()
    expected = {record_key(a): a for a in alerts}
    keys = [h["Idempotency-Key"] for h, _ in delivered]
    assert set(keys) == set(expected), "an alert was lost or an unknown one posted"
    bodies: dict[str, bytes] = {}
    for h, data in delivered:
        assert verify(SECRET, data, h["X-Darkscope-Signature"])
        key = h["Idempotency-Key"]
        assert bodies.setdefault(key, data) == data, "a duplicate carries another body under the same key"
        doc = json.loads(data)
        assert doc["alert_id"] == h["X-Darkscope-Alert-Id"] == expected[key]["alert_id"]
        assert record_key(doc) == key
    # The alert in flight at the crash came twice, under one key: the receiver that keeps the
    # keys it has seen gets every alert exactly once.
    assert len(keys) - len(set(keys)) == 1
    assert keys.count(keys[before_crash - 1]) == 2
    # Within a partition (one alert key), the alerts arrive in the order they were raised.
    first_seen = list(dict.fromkeys(keys))
    for victim in {a["key"] for a in alerts}:
        mine = [record_key(a) for a in alerts if a["key"] == victim]
        assert [k for k in first_seen if k in mine] == mine
    # Everything, the undecodable message included, is committed.
    ends = {p: hi for p, (_, hi) in watermarks(kafka_bootstrap, topic).items()}
    assert _committed(kafka_bootstrap, group, topic) == ends


@pytest.mark.broker
def test_a_refused_alert_and_alerts_below_the_floor_are_passed_over_and_committed(
    kafka_bootstrap: str, topic: str, receiver: Receiver
) -> None:
    alerts = raised_alerts()
    _produce(kafka_bootstrap, topic, alerts)
    # An alert of a grade darkscope does not know, and another of the project's records.
    codec, producer = Codec(), Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(topic, codec.encode("darkscope.Alert", {**alerts[0], "severity": "bogus"}), key=b"x")
    producer.produce(topic, codec.encode("darkscope.SensorHealth", health_record(5)), key=b"y")
    producer.flush(30)
    plan = ForwardPlan(receiver.url, "slack", SECRET, min_severity="warning", first_backoff=0.1)
    receiver.status = 400  # the webhook refuses every body: retrying cannot help
    stats = forward_alerts(kafka_bootstrap, topic, f"refuse-{topic}", plan, idle_timeout=3)
    graded = [a for a in alerts if a["severity"] != "info"]
    assert stats.refused == len(graded) and stats.passed_over == len(alerts) - len(graded)
    assert stats.delivered == 0 and stats.undecodable == 3 and stats.retries == 0
    assert all(json.loads(d)["blocks"] for _, d, _ in receiver.posts)
    ends = {p: hi for p, (_, hi) in watermarks(kafka_bootstrap, topic).items()}
    assert _committed(kafka_bootstrap, f"refuse-{topic}", topic) == ends
