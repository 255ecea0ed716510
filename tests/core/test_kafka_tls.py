"""Every Kafka client darkscope has, over TLS with SASL/SCRAM, against a local broker with a
SASL_SSL listener (certificates made by the test, SCRAM users made through the admin API);
and no secret in a log line or an error message of a run with secrets set.

The broker is this module's own (free ports, a temporary folder), started beside the shared
test broker and stopped at the end; the clients reach it only through its SASL_SSL listener.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core import broker as broker_mod
from core.errors import BrokerError
from core.publisher import Publisher
from core.settings import KafkaSettings, SinkSettings, TopicNames
from core.topics import ensure_topics, list_topics, read_range, watermarks
from fuzz.seeds import messages
from schemas.codec import Codec
from schemas.names import ALERT, ENRICHED_BATCH, SENSOR_HEALTH
from sinks.sink import Sink
from sinks.store import Store
from streams.alert_reader import tail_alerts
from tests.core.tls_broker import TlsBroker, create_scram_user, start_tls_broker
from tests.producers import pktbuild as pb
from tests.streams.harness import REPO, WorkerPool, wait_for

pytestmark = pytest.mark.broker

USER = "darkscope-test"
PASSWORD = f"pw-{uuid.uuid4().hex}"  # unique: a test greps the logs for it
STORE_PASSWORD = f"store-pw-{uuid.uuid4().hex}"  # the sink's ClickHouse password, set too
USER_256 = "darkscope-test-256"
PARTITIONS = 2


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    """The module's broker with PLAINTEXT and SASL_SSL listeners, and two SCRAM users."""
    tls = start_tls_broker(tmp_path_factory.mktemp("tls-broker"))
    try:
        create_scram_user(tls.plaintext, USER, PASSWORD, "SCRAM-SHA-512")
        create_scram_user(tls.plaintext, USER_256, PASSWORD, "SCRAM-SHA-256")
        yield tls
    finally:
        broker_mod.stop(tls.settings)


def secure_env(tls: TlsBroker, password: str = PASSWORD) -> dict[str, str]:
    """The environment of a darkscope process that talks SASL_SSL to the module's broker."""
    return {
        "DARKSCOPE_BOOTSTRAP": tls.sasl_ssl,
        "DARKSCOPE_PARTITIONS": str(PARTITIONS),
        "DARKSCOPE_SECURITY_PROTOCOL": "SASL_SSL",
        "DARKSCOPE_SASL_MECHANISM": "SCRAM-SHA-512",
        "DARKSCOPE_SASL_USERNAME": USER,
        "DARKSCOPE_SASL_PASSWORD": password,
        "DARKSCOPE_SSL_CA": str(tls.ca),
    }


def secure(tls: TlsBroker, **over: Any) -> KafkaSettings:
    """Settings for the SASL_SSL listener (built here, they also register its security)."""
    values: dict[str, Any] = {
        "bootstrap": tls.sasl_ssl,
        "partitions": PARTITIONS,
        "security_protocol": "SASL_SSL",
        "sasl_username": USER,
        "sasl_password": PASSWORD,
        "ssl_ca": tls.ca,
    }
    values.update(over)
    return KafkaSettings(**values)


def fresh_topics(kafka: KafkaSettings) -> TopicNames:
    """A fresh set of darkscope topics, created over SASL_SSL by the admin client."""
    tag = uuid.uuid4().hex[:8]
    names = TopicNames(**{f: f"tls.{tag}.{f}" for f in TopicNames.model_fields})
    ensure_topics(kafka, names.all())
    return names


def test_admin_publisher_readers_sink_and_alerts_tail_work_over_sasl_ssl(
    tls: TlsBroker, tmp_path: Path
) -> None:
    kafka = secure(tls)
    topics = fresh_topics(kafka)  # the admin client
    assert {t.name for t in list_topics(kafka.bootstrap)} >= set(topics.all())
    frames = messages()
    codec = Codec()

    pub = Publisher(kafka.bootstrap)  # the sensor's and the sink's dead-letter publisher
    for frame in frames[ENRICHED_BATCH]:
        pub.send(topics.enriched, frame, packets=int(codec.decode(frame).record["packets"]["count"]))
    pub.send(topics.sensors, frames[SENSOR_HEALTH][0], key=b"sim-0")
    pub.send(topics.alerts, frames[ALERT][0], key=b"23/tcp")
    pub.flush(30)
    assert pub.stats.messages_failed == 0 and pub.stats.messages_sent == len(frames[ENRICHED_BATCH]) + 2

    marks = watermarks(kafka.bootstrap, topics.enriched)  # the takeover reader's two calls
    assert sum(hi for _, hi in marks.values()) == len(frames[ENRICHED_BATCH])
    read = list(read_range(kafka.bootstrap, topics.enriched, {}, {p: hi for p, (_, hi) in marks.items()}))
    assert sorted(bytes(m.value() or b"") for m in read) == sorted(frames[ENRICHED_BATCH])

    settings = SinkSettings(dsn=f"chdb://{tmp_path / 'store'}", group_id=f"tls-sink-{uuid.uuid4().hex[:6]}")
    store = Store.open(settings.dsn)
    try:
        store.migrate()
        stats = Sink(store, settings, kafka, topics).run(exit_when_idle=4.0)
        stored = store.query("SELECT count() FROM packets").result_rows[0][0]
        health = store.query("SELECT count() FROM sensor_health").result_rows[0][0]
    finally:
        store.close()
    want = sum(int(codec.decode(f).record["packets"]["count"]) for f in frames[ENRICHED_BATCH])
    assert (stored, health, stats.dead) == (want, 1, 0)

    lines = list(tail_alerts(kafka.bootstrap, topics.alerts, from_beginning=True, limit=1, idle_timeout=30))
    assert len(lines) == 1 and "23/tcp" in lines[0]


def test_a_scram_sha_256_user_connects_when_the_mechanism_says_so(tls: TlsBroker) -> None:
    kafka = secure(tls, sasl_username=USER_256, sasl_mechanism="SCRAM-SHA-256")
    assert list_topics(kafka.bootstrap, timeout=20) is not None


def test_a_wrong_password_fails_with_an_error_and_log_lines_that_hold_no_secret(
    tls: TlsBroker, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = f"wrong-{uuid.uuid4().hex}"
    kafka = secure(tls, sasl_password=wrong)
    caplog.set_level(logging.DEBUG)
    try:
        with pytest.raises(BrokerError) as caught:
            list_topics(kafka.bootstrap, timeout=10)
        with pytest.raises(BrokerError):
            pub = Publisher(kafka.bootstrap)
            pub.send("tls.nowhere", b"x")
            pub.flush(5)
    finally:
        secure(tls)  # the right security back for this bootstrap
    said = [str(caught.value), *(r.getMessage() for r in caplog.records)]
    assert any("uthentication" in line for line in said), said  # librdkafka says why
    assert not [line for line in said if wrong in line or PASSWORD in line]


def test_a_plaintext_client_is_refused_by_the_sasl_ssl_listener(tls: TlsBroker) -> None:
    KafkaSettings(bootstrap=tls.sasl_ssl)  # PLAINTEXT for this bootstrap
    try:
        with pytest.raises(BrokerError):
            list_topics(tls.sasl_ssl, timeout=5)
    finally:
        secure(tls)


def _darkscope(args: list[str], env: dict[str, str], log: Path, timeout: float = 120) -> None:
    with log.open("ab") as out:
        proc = subprocess.run(
            [sys.executable, "-m", "darkscope", "-vv", *args],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            timeout=timeout,
            check=False,
        )
    assert proc.returncode == 0, log.read_text(errors="replace")[-3000:]


def test_sensor_worker_sink_and_alerts_run_over_sasl_ssl_and_no_log_line_holds_the_password(
    tls: TlsBroker, tmp_path: Path
) -> None:
    kafka = secure(tls)
    topics = fresh_topics(kafka)
    env = secure_env(tls)
    for field in TopicNames.model_fields:
        env[f"DARKSCOPE_TOPIC_{field.upper()}"] = getattr(topics, field)
    frames = [pb.ether(pb.ipv4(pb.tcp(40000 + i, 23), dst=f"198.51.100.{i % 200 + 1}")) for i in range(300)]
    capture = pb.write(tmp_path, "day.pcap", pb.pcap_file(frames))

    _darkscope(["sensor", "--pcap", str(capture), "--sensor-id", "tls-sensor"], env, tmp_path / "sensor.log")
    pool = WorkerPool(
        tls.sasl_ssl, topics, tmp_path, **{k: v for k, v in env.items() if k != "DARKSCOPE_BOOTSTRAP"}
    )
    try:
        pool.start()
        wait_for(
            "the worker to enrich the sensor's 300 packets over SASL_SSL",
            lambda: _enriched(kafka.bootstrap, topics.enriched) >= len(frames),
            180,
            tmp_path,
        )
    finally:
        pool.close()
    sink_env = {
        **env,
        "DARKSCOPE_SINK_DSN": f"chdb://{tmp_path / 'store'}",
        "DARKSCOPE_SINK_GROUP_ID": "tls-sink",
        "DARKSCOPE_SINK_PASSWORD": STORE_PASSWORD,
    }
    _darkscope(["sink", "--exit-when-idle", "4"], sink_env, tmp_path / "sink.log")
    _darkscope(["alerts", "tail", "--from-beginning", "--timeout", "3"], env, tmp_path / "alerts.log")
    sql = ["sql", "--format", "csv", "SELECT count() FROM packets"]
    _darkscope(sql, sink_env, tmp_path / "sql.log")

    assert _enriched(kafka.bootstrap, topics.enriched) == len(frames)
    assert (tmp_path / "sql.log").read_text().strip().splitlines()[-1] == str(len(frames))
    logs = {p.name: p.read_text(errors="replace") for p in tmp_path.glob("*.log")}
    assert set(logs) >= {"sensor.log", "worker0.log", "sink.log", "alerts.log"}
    assert "300 packets in 1 batches acknowledged by Kafka" in logs["sensor.log"]
    leaks = [name for name, text in logs.items() if PASSWORD in text or STORE_PASSWORD in text]
    assert leaks == [], f"a password appears in {leaks}"


def _enriched(bootstrap: str, topic: str) -> int:
    codec, total = Codec(), 0
    marks = watermarks(bootstrap, topic)
    for m in read_range(bootstrap, topic, {}, {p: hi for p, (_, hi) in marks.items()}):
        total += int(codec.decode(m.value() or b"").record["packets"]["count"])
    return total


def test_a_cli_run_with_a_wrong_password_says_so_without_the_password(tls: TlsBroker, tmp_path: Path) -> None:
    wrong = f"wrong-{uuid.uuid4().hex}"
    env = {**os.environ, **secure_env(tls, wrong)}
    proc = subprocess.run(
        [sys.executable, "-m", "darkscope", "-vv", "topics", "list"],
        env=env,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "BrokerError" in out
    assert wrong not in out
