"""A local single-node Apache Kafka broker (KRaft, combined broker+controller) from Maven jars.

No tarball site and no Docker are reachable where darkscope is developed, so the broker runs
from the jars that ``infra/kafka/pom.xml`` pins: Maven copies them into a cache folder once,
KRaft storage is formatted once per data folder, and ``kafka.Kafka`` starts on 127.0.0.1.
The same code serves ``darkscope broker up|down|status``, ``make demo``, the tests and CI.
``start`` returns once the broker serves clients (producer ids granted, the group coordinator
loaded), not merely once it answers metadata, so its first clients need no retries.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import BrokerError
from core.settings import BrokerSettings

__all__ = [
    "BrokerStatus",
    "KAFKA_VERSION",
    "SaslSslListener",
    "broker_status",
    "coordinators_ready",
    "ensure_jars",
    "pid_assigned",
    "process_rss",
    "start",
    "stop",
]

logger = logging.getLogger(__name__)

KAFKA_VERSION = "4.1.1"  # keep in step with infra/kafka/pom.xml
INFRA_DIR = Path(__file__).resolve().parent.parent / "infra" / "kafka"

_SERVER_PROPERTIES = """\
# Written by core.broker at every start; edit BrokerSettings, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}{extra_listener}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}{extra_listener}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT{extra_protocol}
log.dirs={log_dirs}
num.partitions=1
# A single node: every internal topic has one replica.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Consumer groups (Faust workers, tests) start without the 3 s rebalance wait.
group.initial.rebalance.delay.ms=0
# Columnar packet batches of ~10k packets are ~0.5 MB; leave room above that.
message.max.bytes=8388608
replica.fetch.max.bytes=8388608
log.retention.hours=168
log.segment.bytes=268435456
"""

# Appended when the broker also listens with SASL_SSL (:class:`SaslSslListener`): SCRAM users
# are created through the admin API (AlterUserScramCredentials) on the PLAINTEXT listener.
_SASL_SSL_PROPERTIES = """\
sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=\
org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=\
org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location={keystore}
"""


@dataclass(frozen=True)
class SaslSslListener:
    """A second listener speaking SASL (SCRAM-SHA-256/512) over TLS, beside the PLAINTEXT one.

    ``keystore`` is one PEM file: the broker's private key (unencrypted PKCS#8) and its
    certificate chain. The default broker has no such listener; tests start one with it.
    """

    port: int
    keystore: Path


@dataclass(frozen=True)
class BrokerStatus:
    """What `darkscope broker status` reports."""

    running: bool
    answering: bool
    pid: int | None
    bootstrap: str
    rss_bytes: int | None
    log_file: Path


def _paths(settings: BrokerSettings) -> dict[str, Path]:
    d = settings.data_dir
    return {
        "pid": d / "broker.pid",
        "log": d / "broker.log",
        "out": d / "broker.out",
        "props": d / "server.properties",
        "logs": d / "logs",
        "log4j": INFRA_DIR / "log4j2.properties",
    }


def ensure_jars(settings: BrokerSettings) -> Path:
    """Copy the pinned broker jars into the cache folder (once) and return the lib folder."""
    lib = settings.cache_dir / f"kafka-{KAFKA_VERSION}" / "lib"
    stamp = lib / ".complete"
    if stamp.exists():
        return lib
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError("Maven (mvn) is not on PATH; it fetches the pinned Kafka jars")
    pom = INFRA_DIR / "pom.xml"
    if not pom.exists():
        raise BrokerError(f"{pom} not found; run darkscope from its source checkout")
    lib.mkdir(parents=True, exist_ok=True)
    logger.info("fetching Kafka %s jars into %s", KAFKA_VERSION, lib)
    cmd = [
        mvn,
        "-B",
        "-q",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={lib}",
        "-DincludeScope=runtime",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BrokerError(f"mvn failed ({proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    if not list(lib.glob("kafka_2.13-*.jar")):
        raise BrokerError(f"mvn ran but no kafka_2.13 jar landed in {lib}")
    stamp.write_text(KAFKA_VERSION)
    return lib


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise BrokerError("java is not on PATH (Kafka 4 needs Java 17+)")
    return java


def _read_pid(settings: BrokerSettings) -> int | None:
    pid_file = _paths(settings)["pid"]
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    # A zombie or recycled pid is not our broker: check its command line.
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return pid
    return pid if b"kafka.Kafka" in cmdline else None


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def answers_metadata(bootstrap: str, timeout: float = 2.0) -> bool:
    """True when a Kafka broker at ``bootstrap`` answers a metadata request."""
    from confluent_kafka.admin import AdminClient

    conf: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "socket.timeout.ms": int(timeout * 1000),
        "log_level": 0,
        "logger": logging.getLogger("darkscope.kafka.admin"),
    }
    admin = AdminClient(conf)
    try:
        md = admin.list_topics(timeout=timeout)
    except Exception:  # noqa: BLE001 - any client error means "not answering"
        return False
    return bool(md.brokers)


# The probes' own librdkafka logs stay out of the output: their transient errors are the
# very thing they wait out (log_level 0 keeps librdkafka from logging at all).
_PROBE_LOG: dict[str, Any] = {"log_level": 0, "logger": logging.getLogger("darkscope.kafka.probe")}
_PROBE_GROUP = "darkscope.broker-probe"  # a group that never commits; its topic is never created


def pid_assigned(eos: dict[str, Any]) -> bool:
    """True when librdkafka's statistics (their ``eos`` object) say the producer has its id."""
    return eos.get("idemp_state") == "Assigned" and int(eos.get("producer_id", -1)) >= 0


def _producer_id_granted(bootstrap: str, deadline: float) -> bool:
    """Wait until an idempotent producer gets its producer id (no message is sent)."""
    from confluent_kafka import Producer

    eos: dict[str, Any] = {}

    def on_stats(stats: str) -> None:
        eos.update(json.loads(stats).get("eos", {}))

    # librdkafka asks for the id as soon as the producer exists, and reports it in its stats.
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "statistics.interval.ms": 50,
            "stats_cb": on_stats,
            **_PROBE_LOG,
        }
    )
    while time.monotonic() < deadline:
        producer.poll(0.05)
        if pid_assigned(eos):
            return True
    return False


def _group_coordinator_loaded(bootstrap: str, deadline: float) -> bool:
    """Wait until a consumer group gets an answer from its coordinator (offsets fetched)."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    while time.monotonic() < deadline:
        consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": _PROBE_GROUP,
                "enable.auto.commit": False,
                **_PROBE_LOG,
            }
        )
        try:
            # Fetching offsets needs the group's coordinator; the first request creates
            # __consumer_offsets, and NOT_COORDINATOR or a load in progress answer until it is loaded.
            consumer.committed([TopicPartition(_PROBE_GROUP, 0)], timeout=max(deadline - time.monotonic(), 1))
            return True
        except KafkaException as exc:
            logger.debug("group coordinator not ready on %s: %s", bootstrap, exc)
            time.sleep(0.2)
        finally:
            consumer.close()
    return False


def coordinators_ready(bootstrap: str, timeout: float = 30.0) -> bool:
    """True once the broker grants producer ids and loads the group coordinator.

    A KRaft broker answers metadata a second or two before that: until then an idempotent
    producer's InitProducerId fails with COORDINATOR_LOAD_IN_PROGRESS (librdkafka prints its
    GETPID warning and retries) and offset requests fail with NOT_COORDINATOR.
    """
    deadline = time.monotonic() + timeout
    return _producer_id_granted(bootstrap, deadline) and _group_coordinator_loaded(bootstrap, deadline)


def process_rss(pid: int | None) -> int | None:
    """Resident memory of a process in bytes (None without a pid, or once it is gone)."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def broker_status(settings: BrokerSettings) -> BrokerStatus:
    """Is the broker process alive, and does it answer metadata requests?"""
    pid = _read_pid(settings)
    bootstrap = f"127.0.0.1:{settings.port}"
    answering = _port_open(settings.port) and answers_metadata(bootstrap)
    return BrokerStatus(pid is not None, answering, pid, bootstrap, process_rss(pid), _paths(settings)["log"])


def _format_once(settings: BrokerSettings, java: str, lib: Path) -> None:
    p = _paths(settings)
    if (p["logs"] / "meta.properties").exists():
        return
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    cmd = [
        java,
        "-cp",
        f"{lib}/*",
        f"-Dlog4j2.configurationFile={p['log4j']}",
        f"-Ddarkscope.log={p['log']}",
        "kafka.tools.StorageTool",
        "format",
        "-t",
        cluster_id,
        "-c",
        str(p["props"]),
        "--standalone",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BrokerError(f"formatting KRaft storage failed:\n{proc.stdout}{proc.stderr}")
    logger.info("formatted KRaft storage in %s (cluster %s)", p["logs"], cluster_id)


def _properties(settings: BrokerSettings, log_dirs: Path, sasl_ssl: SaslSslListener | None) -> str:
    """server.properties: PLAINTEXT on ``settings.port``, and SASL_SSL when asked."""
    extra = f",SASL_SSL://127.0.0.1:{sasl_ssl.port}" if sasl_ssl else ""
    props = _SERVER_PROPERTIES.format(
        port=settings.port,
        controller_port=settings.effective_controller_port,
        log_dirs=log_dirs,
        extra_listener=extra,
        extra_protocol=",SASL_SSL:SASL_SSL" if sasl_ssl else "",
    )
    if sasl_ssl:
        props += _SASL_SSL_PROPERTIES.format(keystore=sasl_ssl.keystore)
    return props


def start(settings: BrokerSettings, sasl_ssl: SaslSslListener | None = None) -> tuple[BrokerStatus, bool]:
    """Start the broker unless one runs; return its status and whether this call started it.

    ``sasl_ssl`` adds a SASL_SSL listener (tests of clients over TLS); the PLAINTEXT one stays.
    """
    current = broker_status(settings)
    if current.running or current.answering:
        return current, False
    if _port_open(settings.port):
        raise BrokerError(f"port {settings.port} is taken by something that is not a Kafka broker")
    lib = ensure_jars(settings)
    java = _java()
    p = _paths(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    p["props"].write_text(_properties(settings, p["logs"], sasl_ssl))
    _format_once(settings, java, lib)
    cmd = [
        java,
        f"-Xmx{settings.heap}",
        f"-Xms{settings.heap}",
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={p['log4j']}",
        f"-Ddarkscope.log={p['log']}",
        "-cp",
        f"{lib}/*",
        "kafka.Kafka",
        str(p["props"]),
    ]
    started = time.monotonic()
    with open(p["out"], "ab") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    p["pid"].write_text(str(proc.pid))
    bootstrap = f"127.0.0.1:{settings.port}"
    while time.monotonic() - started < settings.start_timeout:
        if proc.poll() is not None:
            raise BrokerError(f"broker exited with {proc.returncode}; see {p['log']} and {p['out']}")
        if _port_open(settings.port) and answers_metadata(bootstrap):
            # Answering is not serving yet: wait for the coordinators too, so that the first
            # clients (the demo's publisher, a worker's consumer group) need no retries.
            left = settings.start_timeout - (time.monotonic() - started)
            if not coordinators_ready(bootstrap, timeout=max(left, 1.0)):
                break
            logger.info("broker up on %s in %.1f s", bootstrap, time.monotonic() - started)
            return broker_status(settings), True
        time.sleep(0.25)
    proc.kill()
    raise BrokerError(f"broker did not serve clients within {settings.start_timeout:.0f} s; see {p['log']}")


def stop(settings: BrokerSettings, timeout: float = 60.0) -> bool:
    """Stop the broker cleanly (SIGTERM, then SIGKILL after ``timeout``); False if none ran."""
    pid = _read_pid(settings)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _read_pid(settings) is None:
            break
        time.sleep(0.2)
    else:
        logger.warning("broker %d did not stop in %.0f s; killing it", pid, timeout)
        os.kill(pid, signal.SIGKILL)
    _paths(settings)["pid"].unlink(missing_ok=True)
    return True
