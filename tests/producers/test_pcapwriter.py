"""The capture writer: pcap and pcapng files that scapy and tcpdump read back field for field."""

from __future__ import annotations

import ipaddress
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, UDPerror
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Packet
from scapy.utils import rdpcap

from core.errors import ConfigError
from producers.pcapwriter import encode_records, open_writer, write_capture
from schemas.batch import PacketBatch

T0 = 1_650_000_000_123_456_789  # 2022-04-15T05:20:00.123456789Z
ZMAP41_KINDS = 0x0201030101040000


def _v4(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def _row(batch: PacketBatch, i: int, **values: Any) -> None:
    for name, value in values.items():
        if name in ("src6", "dst6"):
            batch.columns[name][i] = np.frombuffer(ipaddress.IPv6Address(value).packed, dtype="V16")[0]
        else:
            batch.columns[name][i] = value


def eight_shapes() -> PacketBatch:
    """Eight packets, one of each header shape the writer builds."""
    b = PacketBatch.zeros("test", 0, 8)
    common = {"ip_version": 4, "dst": _v4("198.51.100.7"), "ttl": 50, "ip_id": 4321}
    for i in range(8):
        _row(b, i, ts=T0 + i * 1000, **common)
    _row(
        b,
        0,
        src=_v4("203.0.113.9"),
        protocol=6,
        sport=40001,
        dport=23,
        tcp_flags=2,
        tcp_seq=_v4("198.51.100.7"),
        tcp_window=5840,
        length=40,
    )  # Mirai-like SYN
    _row(
        b,
        1,
        src=_v4("192.0.2.10"),
        protocol=6,
        sport=50000,
        dport=6379,
        tcp_flags=2,
        tcp_seq=77,
        tcp_window=65535,
        tcp_opt_len=12,
        tcp_opt_kinds=ZMAP41_KINDS,
        tcp_mss=1460,
        tcp_wscale=8,
        length=52,
    )  # ZMap 4.1
    _row(b, 2, src=_v4("192.0.2.11"), protocol=17, sport=5353, dport=53, length=60, ip_flags=2)
    _row(b, 3, src=_v4("192.0.2.12"), protocol=1, icmp_type=8, length=84)
    _row(
        b,
        4,
        src=_v4("192.0.2.13"),
        protocol=1,
        icmp_type=3,
        icmp_code=3,
        inner_protocol=17,
        inner_src=_v4("198.51.100.7"),
        inner_dst=_v4("192.0.2.13"),
        inner_sport=1234,
        inner_dport=53,
        length=56,
    )  # port unreachable quoting a spoofed UDP packet
    _row(
        b,
        5,
        src=_v4("192.0.2.14"),
        protocol=6,
        sport=80,
        dport=31337,
        tcp_flags=0x12,
        tcp_seq=9,
        tcp_ack=10,
        tcp_window=64240,
        tcp_opt_len=4,
        tcp_opt_kinds=0x02 << 56,
        tcp_mss=1400,
        length=44,
    )  # SYN-ACK backscatter
    _row(
        b,
        6,
        ip_version=6,
        src=0,
        dst=0,
        src6="2001:db8::1",
        dst6="2001:db8:ffff::7",
        protocol=58,
        icmp_type=128,
        length=104,
        ttl=60,
    )  # ICMPv6 echo request
    _row(
        b,
        7,
        ip_version=6,
        src=0,
        dst=0,
        src6="2001:db8::2",
        dst6="2001:db8:ffff::8",
        protocol=6,
        sport=1111,
        dport=22,
        tcp_flags=2,
        tcp_seq=5,
        tcp_window=29200,
        length=60,
        ttl=61,
    )
    return b


@pytest.fixture
def batch() -> PacketBatch:
    return eight_shapes()


def _valid_checksums(pkt: Packet) -> bool:
    """True when scapy, recomputing every checksum, gets the ones in the packet."""
    rebuilt = Ether(bytes(pkt))
    for layer in (IP, TCP, UDP, ICMP, IPerror):  # quoted L4 headers are kept as sent
        if layer in rebuilt and hasattr(rebuilt[layer], "chksum"):
            rebuilt[layer].chksum = None
    rebuilt = Ether(bytes(rebuilt))
    for layer in (IP, TCP, UDP, ICMP, IPerror):
        if layer in pkt and pkt[layer].chksum != rebuilt[layer].chksum:
            return False
    if ICMPv6EchoRequest in pkt:
        again = pkt.copy()
        again[ICMPv6EchoRequest].cksum = None
        return bool(Ether(bytes(again))[ICMPv6EchoRequest].cksum == pkt[ICMPv6EchoRequest].cksum)
    return True


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
@pytest.mark.parametrize("nanosecond", [True, False])
def test_scapy_reads_back_every_header_field(
    tmp_path: Path, batch: PacketBatch, fmt: str, nanosecond: bool
) -> None:
    path = tmp_path / f"x.{fmt}"
    assert write_capture(path, [batch], fmt, nanosecond=nanosecond) == 8
    pkts = rdpcap(str(path))
    assert len(pkts) == 8
    unit = 1 if nanosecond else 1000
    assert [int(p.time * 10**9) // unit for p in pkts] == [(T0 + i * 1000) // unit for i in range(8)]
    mirai, zmap, udp, echo, unreach, synack, v6echo, v6syn = pkts
    assert mirai[IP].src == "203.0.113.9" and mirai[TCP].seq == _v4("198.51.100.7")
    assert mirai[TCP].flags == "S" and mirai[TCP].options == [] and mirai[IP].id == 4321
    assert mirai[IP].flags == 0 and mirai[IP].ttl == 50 and mirai[IP].len == 40
    assert bytes(zmap[TCP])[20:32] == bytes.fromhex("020405b40103030801010402")
    assert zmap[TCP].window == 65535 and zmap[TCP].dport == 6379
    assert udp[UDP].dport == 53 and udp[UDP].len == 40 and udp[IP].flags == "DF"
    assert echo[ICMP].type == 8 and echo[IP].len == 84
    assert unreach[ICMP].type == 3 and unreach[ICMP].code == 3
    assert unreach[IPerror].src == "198.51.100.7" and unreach[IPerror].dst == "192.0.2.13"
    assert unreach[UDPerror].sport == 1234 and unreach[UDPerror].dport == 53
    assert synack[TCP].flags == "SA" and synack[TCP].ack == 10 and synack[TCP].options == [("MSS", 1400)]
    assert v6echo[IPv6].src == "2001:db8::1" and v6echo[IPv6].hlim == 60 and v6echo[IPv6].plen == 64
    assert v6syn[IPv6].dst == "2001:db8:ffff::8" and v6syn[TCP].dport == 22 and v6syn[TCP].window == 29200
    assert all(_valid_checksums(p) for p in pkts)


def test_pcap_header_says_nanoseconds_or_microseconds(tmp_path: Path, batch: PacketBatch) -> None:
    for nano, magic in ((True, 0xA1B23C4D), (False, 0xA1B2C3D4)):
        path = tmp_path / f"{nano}.pcap"
        write_capture(path, [batch], "pcap", nanosecond=nano)
        assert struct.unpack("<I", path.read_bytes()[:4])[0] == magic


def test_snaplen_truncates_frames_but_keeps_wire_length(tmp_path: Path, batch: PacketBatch) -> None:
    path = tmp_path / "short.pcap"
    write_capture(path, [batch], "pcap", snaplen=54)
    pkts = rdpcap(str(path))
    assert [len(bytes(p)) for p in pkts] == [54] * 8
    assert [p.wirelen for p in pkts] == [14 + int(n) for n in batch["length"]]


def test_records_keep_batch_order_across_shapes(batch: PacketBatch) -> None:
    shuffled = batch.take(np.array([7, 0, 4, 1, 6, 2, 5, 3]))
    data = encode_records(shuffled, "pcap")
    offset, lengths = 0, []
    while offset < len(data):
        _, _, caplen, _ = struct.unpack_from("<IIII", data, offset)
        lengths.append(caplen)
        offset += 16 + caplen
    assert lengths == [14 + int(n) for n in shuffled["length"]]


def test_empty_batch_writes_only_the_file_header(tmp_path: Path) -> None:
    path = tmp_path / "empty.pcapng"
    assert write_capture(path, [PacketBatch.zeros("s", 0, 0)], "pcapng") == 0
    assert rdpcap(str(path)) is not None and len(rdpcap(str(path))) == 0


def test_unknown_format_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        open_writer(tmp_path / "x.cap", "erf")


def _simulated_day() -> PacketBatch:
    from producers.sim.simulate import simulate_quarter

    try:
        sim = simulate_quarter(packets_per_day=1500, days=1, seed=11)
    except ConfigError as exc:  # the packaged geo database is missing
        pytest.skip(str(exc))
    return PacketBatch.concat(list(sim), "sim-0", 0)


def test_simulated_day_round_trips_through_scapy(tmp_path: Path) -> None:
    day = _simulated_day()
    path = tmp_path / "day.pcapng"
    write_capture(path, [day.slice(0, 700), day.slice(700, len(day))], "pcapng")
    pkts = rdpcap(str(path))
    assert len(pkts) == len(day)
    got = np.array([(int(ipaddress.IPv4Address(p[IP].src)), p[IP].ttl, p[IP].id, p[IP].proto) for p in pkts])
    want = np.stack([day["src"], day["ttl"], day["ip_id"], day["protocol"]], axis=1).astype(np.int64)
    assert np.array_equal(got, want)
    tcp = [(p[TCP].seq, p[TCP].dport, p[TCP].window, int(p[TCP].flags)) for p in pkts if TCP in p]
    is_tcp = day["protocol"] == 6
    want_tcp = np.stack([day["tcp_seq"], day["dport"], day["tcp_window"], day["tcp_flags"]], axis=1)[is_tcp]
    assert np.array_equal(np.array(tcp, dtype=np.int64), want_tcp.astype(np.int64))
    assert all(_valid_checksums(p) for p in pkts[:400])


@pytest.mark.skipif(
    shutil.which("tcpdump") is None and not Path("/usr/bin/tcpdump").exists(),
    reason="tcpdump is not installed",
)
@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_tcpdump_reads_the_file_and_finds_checksums_correct(tmp_path: Path, fmt: str) -> None:
    day = _simulated_day()
    path = tmp_path / f"day.{fmt}"
    write_capture(path, [day], fmt)
    tcpdump = shutil.which("tcpdump") or "/usr/bin/tcpdump"
    out = subprocess.run([tcpdump, "-nn", "-vv", "-r", str(path)], capture_output=True, text=True, check=True)
    lines = [ln for ln in out.stdout.splitlines() if not ln.startswith((" ", "\t"))]
    assert len(lines) == len(day)
    assert "incorrect" not in out.stdout and "bad cksum" not in out.stdout
    mirai = subprocess.run(
        [tcpdump, "-nn", "-r", str(path), "tcp[4:4] == ip[16:4] and tcp[13] == 2"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert len(mirai.stdout.splitlines()) == int((day["tcp_seq"] == day["dst"]).sum()) > 0


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_project_capture_reader_gets_every_column_back(tmp_path: Path, fmt: str) -> None:
    capture = pytest.importorskip("producers.capture")
    day = _simulated_day()
    path = tmp_path / f"day.{fmt}"
    write_capture(path, [day], fmt)
    with capture.open_capture(path) as cap:
        got = PacketBatch.concat(list(cap), "x", 0)
    assert [k for k in day.columns if not np.array_equal(day[k], got[k])] == []
