"""Live capture for real: a veth pair into a network namespace, crafted packets sent into it
with scapy, a `darkscope sensor --iface` process capturing, and Kafka holding them decoded."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.settings import TopicNames
from schemas.codec import Codec
from tests.kafka_helpers import read_all

pytestmark = pytest.mark.broker

REPO = Path(__file__).resolve().parents[2]
SENDER = r"""
import sys
from scapy.all import Ether, IP, TCP, UDP, ICMP, sendp
iface = sys.argv[1]
pkts = []
for i in range(40):  # Mirai-style SYNs: sequence number == destination address
    dst = f"198.51.100.{i + 1}"
    seq = int.from_bytes(bytes(int(x) for x in dst.split(".")), "big")
    pkts.append(Ether(dst="ff:ff:ff:ff:ff:ff") / IP(src="203.0.113.5", dst=dst, ttl=61, id=i) /
                TCP(sport=41000, dport=23, flags="S", seq=seq, window=5840))
for i in range(10):  # SYN-ACK backscatter
    pkts.append(Ether(dst="ff:ff:ff:ff:ff:ff") / IP(src="192.0.2.77", dst="198.51.100.200") /
                TCP(sport=80, dport=1024 + i, flags="SA"))
for i in range(5):  # outside the monitored prefix: dropped by the sensor
    pkts.append(Ether(dst="ff:ff:ff:ff:ff:ff") / IP(src="203.0.113.5", dst="192.0.2.1") / UDP(dport=53))
sendp(pkts, iface=iface, verbose=False, inter=0.002)
"""


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


@pytest.fixture
def veth() -> Iterator[tuple[str, str, str]]:
    """(capture interface in this namespace, namespace, its peer interface)."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 to create a network namespace")
    tag = uuid.uuid4().hex[:6]
    ns, here, there = f"ds{tag}", f"dsc{tag}", f"dsp{tag}"
    try:
        _run("ip", "netns", "add", ns)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"this machine forbids network namespaces: {exc.stderr.decode().strip()}")
    try:
        _run("ip", "link", "add", here, "type", "veth", "peer", "name", there)
        _run("ip", "link", "set", there, "netns", ns)
        _run("ip", "link", "set", here, "up")
        _run("ip", "netns", "exec", ns, "ip", "link", "set", there, "up")
        yield here, ns, there
    finally:
        subprocess.run(["ip", "link", "del", here], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def test_packets_sent_into_a_veth_arrive_on_kafka_decoded(
    kafka_bootstrap: str, topic_names: TopicNames, veth: tuple[str, str, str]
) -> None:
    here, ns, there = veth
    env = {
        **os.environ,
        "DARKSCOPE_BOOTSTRAP": kafka_bootstrap,
        "DARKSCOPE_TOPIC_PACKETS": topic_names.packets,
        "DARKSCOPE_TOPIC_SENSORS": topic_names.sensors,
        "DARKSCOPE_SENSOR_LINGER": "0.05",
        "DARKSCOPE_SENSOR_HEALTH_INTERVAL": "1",
    }
    sensor = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "darkscope",
            "sensor",
            "--iface",
            here,
            "--bpf",
            "ip",
            "--sensor-id",
            "veth-sensor",
            "--prefix",
            "198.51.100.0/24",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )
    try:
        time.sleep(3)  # libpcap open, producer connect
        subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, "-c", SENDER, there],
            check=True,
            capture_output=True,
            timeout=60,
        )
        time.sleep(2)
    finally:
        sensor.send_signal(signal.SIGTERM)
        out, _ = sensor.communicate(timeout=60)
    text = out.decode()
    assert sensor.returncode == 0, text
    assert "50 sent" in text or "sent: 50 packets" in text, text
    assert "5 outside the monitored prefixes" in text, text

    codec = Codec()
    rows = []
    for msg in read_all(kafka_bootstrap, topic_names.packets):
        rows.extend(codec.decode_packets(msg.value() or b"").rows())
    assert len(rows) == 50
    mirai = [r for r in rows if r["tcp_flags"] == 0x02]
    assert len(mirai) == 40
    assert all(r["tcp_seq"] == int.from_bytes(r["dst_addr"], "big") for r in mirai)
    assert all(r["dport"] == 23 and r["ttl"] == 61 and r["tcp_window"] == 5840 for r in mirai)
    synack = [r for r in rows if r["tcp_flags"] == 0x12]
    assert len(synack) == 10 and {r["sport"] for r in synack} == {80}
    assert all(r["sensor_id"] == "veth-sensor" for r in rows)
    health = [codec.decode(m.value() or b"").record for m in read_all(kafka_bootstrap, topic_names.sensors)]
    assert health and max(h["packets_sent"] for h in health) == 50
