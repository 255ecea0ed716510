"""producers.capture: detection, streaming in chunks, batching, bad captures, and logging."""

from __future__ import annotations

import gzip
import io
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from core.errors import CaptureError
from producers.capture import Capture, open_capture
from schemas.batch import PacketBatch
from tests.producers.pktbuild import (
    arp,
    block,
    epb,
    ether,
    idb,
    ip4,
    ipv4,
    pcap_file,
    pcap_header,
    pcap_record,
    shb,
    tcp,
    write,
)

REPO = Path(__file__).resolve().parents[2]
T0 = 1_650_000_000_000_000_000
SYNS = [ether(ipv4(tcp(1024 + i % 60000, 23, seq=i))) for i in range(2500)]


def all_of(cap: Capture) -> PacketBatch:
    with cap:
        return PacketBatch.concat(list(cap), cap.sensor_id, 0)


def test_a_pcap_file_becomes_batches_of_the_requested_size(tmp_path: Path) -> None:
    path = write(tmp_path, "a.pcap", pcap_file(SYNS))
    cap = open_capture(path, batch_size=1000, sensor_id="sensor-7", first_batch_seq=40)
    batches = list(cap)
    assert [len(b) for b in batches] == [1000, 1000, 500]
    assert [b.batch_seq for b in batches] == [40, 41, 42] and {b.sensor_id for b in batches} == {"sensor-7"}
    seq = np.concatenate([b["tcp_seq"] for b in batches])
    assert seq.tolist() == list(range(2500))
    st = cap.stats
    assert (st.format, st.frames, st.packets, st.batches) == ("pcap", 2500, 2500, 3)
    assert st.bytes == path.stat().st_size and not st.malformed and st.stopped is None


def test_the_default_batch_size_is_ten_thousand(tmp_path: Path) -> None:
    path = write(tmp_path, "a.pcap", pcap_file(SYNS * 5))
    assert [len(b) for b in open_capture(path)] == [10_000, 2500]


@pytest.mark.parametrize("chunk_size", [1024, 4096, 65_536])
def test_small_read_chunks_give_the_same_packets(tmp_path: Path, chunk_size: int) -> None:
    path = write(tmp_path, "a.pcap", pcap_file(SYNS))
    got = all_of(open_capture(path, chunk_size=chunk_size, batch_size=333))
    assert got["tcp_seq"].tolist() == list(range(2500)) and got["ts"][1] - got["ts"][0] == 1_000_000


def test_pcapng_is_detected_by_its_magic(tmp_path: Path) -> None:
    data = shb() + idb(1) + b"".join(epb(f, i) for i, f in enumerate(SYNS[:10]))
    cap = open_capture(write(tmp_path, "x.cap", data))
    assert len(all_of(cap)) == 10 and cap.stats.format == "pcapng"


@pytest.mark.parametrize("name", ["a.pcap.gz", "a.pcap"])
def test_gzip_is_detected_by_its_magic_not_its_name(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, name, gzip.compress(pcap_file(SYNS)))
    cap = open_capture(path, chunk_size=4096)
    assert len(all_of(cap)) == 2500 and cap.stats.compressed
    assert cap.stats.bytes == len(pcap_file(SYNS))


def test_concatenated_gzip_members_are_read_as_one_stream(tmp_path: Path) -> None:
    data = pcap_file(SYNS)
    path = write(tmp_path, "a.pcap.gz", gzip.compress(data[:5000]) + gzip.compress(data[5000:]))
    assert len(all_of(open_capture(path, chunk_size=2048))) == 2500


def test_a_gzip_stream_cut_short_keeps_what_was_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    packed = gzip.compress(pcap_file(SYNS))
    cap = open_capture(write(tmp_path, "cut.pcap.gz", packed[: len(packed) // 2]), chunk_size=2048)
    with caplog.at_level(logging.WARNING):
        got = all_of(cap)
    assert 0 < len(got) < 2500 and cap.stats.stopped == "gzip stream ends early"
    assert "cut.pcap.gz" in caplog.text


def test_a_binary_stream_can_be_read(tmp_path: Path) -> None:
    cap = open_capture(io.BytesIO(pcap_file(SYNS[:5])))
    assert len(all_of(cap)) == 5 and cap.stats.source == "<stream>"


@pytest.mark.parametrize("compress", [False, True])
def test_dash_reads_standard_input(tmp_path: Path, compress: bool) -> None:
    data = pcap_file(SYNS)
    path = write(tmp_path, "in.pcap", gzip.compress(data) if compress else data)
    code = "from producers.capture import open_capture\nprint(sum(len(b) for b in open_capture('-')))"
    with path.open("rb") as stdin:
        out = subprocess.run(
            [sys.executable, "-c", code], stdin=stdin, capture_output=True, cwd=REPO, check=True, timeout=60
        )
    assert out.stdout.decode().strip() == "2500"


@pytest.mark.timeout(20)
def test_a_quiet_pipe_hands_out_what_it_has_without_waiting_for_a_full_batch() -> None:
    r, w = os.pipe()
    os.write(w, pcap_file(SYNS[:3]))
    with os.fdopen(r, "rb") as stream:
        cap = open_capture(stream, batch_size=1000, max_delay=0.01)
        first = next(cap)
        assert len(first) == 3
        os.write(w, b"".join(pcap_record(f, T0) for f in SYNS[3:10]))
        os.close(w)
        assert [len(b) for b in cap] == [7]


# --- not captures ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty file"),
        (b"<html><body>not a capture</body></html>", "not a pcap or pcapng capture"),
        (pcap_header()[:12], "cut short"),
        (gzip.compress(b"hello, world: this is text, not packets"), "not a pcap or pcapng capture"),
    ],
)
def test_a_file_that_is_not_a_capture_raises_before_yielding(
    tmp_path: Path, data: bytes, message: str
) -> None:
    path = write(tmp_path, "bad.pcap", data)
    with pytest.raises(CaptureError, match=message) as err:
        open_capture(path)
    assert str(path) in str(err.value)


def test_a_missing_file_raises_capture_error(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="cannot open"):
        open_capture(tmp_path / "nope.pcap")


def test_a_corrupt_gzip_header_raises_capture_error(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="gzip"):
        open_capture(write(tmp_path, "x.gz", b"\x1f\x8b\x08\x00garbage-garbage-garbage"))


# --- bad captures ----------------------------------------------------------------------------


def test_a_truncated_file_keeps_every_whole_record(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = pcap_file(SYNS[:100])
    path = write(tmp_path, "cut.pcap", data[:-20])
    cap = open_capture(path, chunk_size=1024)
    with caplog.at_level(logging.WARNING):
        assert len(all_of(cap)) == 99
    assert cap.stats.malformed == {"truncated_record": 1}
    offset = len(data) - 16 - len(SYNS[99])
    assert f"cut.pcap: offset {offset}: capture ends" in caplog.text


def test_a_corrupt_record_length_is_counted_logged_and_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = [pcap_record(f, T0 + i * 1000) for i, f in enumerate(SYNS[:50])]
    bad = pcap_record(SYNS[0], T0, caplen=10_000_000)
    data = pcap_header() + b"".join(good[:20]) + bad + b"".join(good[20:])
    cap = open_capture(write(tmp_path, "bad.pcap", data), chunk_size=1024)
    with caplog.at_level(logging.WARNING):
        got = all_of(cap)
    assert len(got) == 50 and cap.stats.malformed == {"bad_record_length": 1}
    assert f"bad.pcap: offset {24 + sum(map(len, good[:20]))}: record length 10000000" in caplog.text


def test_warnings_are_rate_limited_per_reason(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    frames = [ether(ipv4(tcp()))[:20] for _ in range(30)] + SYNS[:5]  # 30 frames cut in the IP header
    cap = open_capture(write(tmp_path, "short.pcap", pcap_file(frames)), max_warnings=4)
    with caplog.at_level(logging.WARNING):
        assert len(all_of(cap)) == 5
    assert cap.stats.malformed == {"truncated_ip": 30} and cap.stats.warnings_suppressed == 26
    assert caplog.text.count("(truncated_ip)") == 4 and "26 more warnings not shown" in caplog.text


def test_non_ip_frames_are_counted_without_warnings(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cap = open_capture(write(tmp_path, "arp.pcap", pcap_file([arp()] * 3 + SYNS[:2])))
    with caplog.at_level(logging.WARNING):
        assert len(all_of(cap)) == 2
    assert cap.stats.malformed == {"not_ip": 3} and cap.stats.frames == 5 and "not_ip" not in caplog.text


def test_unknown_link_types_are_counted_per_packet_and_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cap = open_capture(write(tmp_path, "usb.pcap", pcap_file(SYNS[:7], linktype=189)))
    with caplog.at_level(logging.WARNING):
        assert len(all_of(cap)) == 0
    assert cap.stats.malformed == {"unknown_linktype": 7} and cap.stats.batches == 0
    assert caplog.text.count("link type 189") == 1


def test_unknown_pcapng_blocks_are_counted(tmp_path: Path) -> None:
    data = shb() + idb(1) + block(0x77, bytes(4)) + epb(SYNS[0], 1) + block(0x78, bytes(4))
    cap = open_capture(write(tmp_path, "u.pcapng", data))
    assert len(all_of(cap)) == 1 and cap.stats.malformed == {"unknown_block": 2}


def test_garbage_after_a_corrupt_length_stops_the_file_and_says_why(tmp_path: Path) -> None:
    data = pcap_file(SYNS[:10]) + pcap_record(SYNS[0], T0, caplen=1 << 31) + b"\xff" * 300_000
    cap = open_capture(write(tmp_path, "junk.pcap", data), chunk_size=65_536)
    assert len(all_of(cap)) == 10
    assert cap.stats.malformed == {"bad_record_length": 1, "resync_failed": 1}


# --- real captures recorded by other people --------------------------------------------------

BACKSCATTER_ICMP = [0, 3, 4, 5, 11, 12, 14, 16, 18]


def counts(b: PacketBatch) -> dict[str, int]:
    """The figures /work/shared/captures/README.md states for each file."""
    tcp_ = b["protocol"] == 6
    flags = b["tcp_flags"]
    return {
        "ipv4": int((b["ip_version"] == 4).sum()),
        "tcp": int(tcp_.sum()),
        "syn_no_ack": int((tcp_ & ((flags & 0x12) == 0x02)).sum()),
        "backscatter_tcp": int((tcp_ & (((flags & 0x12) == 0x12) | ((flags & 0x04) != 0))).sum()),
        "backscatter_icmp": int(((b["protocol"] == 1) & np.isin(b["icmp_type"], BACKSCATTER_ICMP)).sum()),
        "seq_eq_dst": int((tcp_ & (b["tcp_seq"] == b["dst"])).sum()),
    }


def test_synscan_pcapng_gives_the_independent_counts(real_captures: Path) -> None:
    cap = open_capture(real_captures / "synscan.pcapng")
    b = all_of(cap)
    assert cap.stats.frames == 2011 and len(b) == 2011 and cap.stats.format == "pcapng"
    assert counts(b) == {
        "ipv4": 2011,
        "tcp": 2011,
        "syn_no_ack": 1994,
        "backscatter_tcp": 17,
        "backscatter_icmp": 0,
        "seq_eq_dst": 0,
    }
    # README: older Nmap, window = 1024 * (TTL % 4 + 1) on every probe
    syn = (b["tcp_flags"] & 0x12) == 0x02
    assert (b["tcp_window"][syn] == 1024 * (b["ttl"][syn].astype(np.int64) % 4 + 1)).all()


def test_amp_reflection_pcap_gives_the_independent_counts(real_captures: Path) -> None:
    cap = open_capture(real_captures / "amp.TCP.reflection.SYNACK.pcap")
    b = all_of(cap)
    assert cap.stats.frames == 8000 and len(b) == 7996 and cap.stats.malformed == {"not_ip": 4}
    assert counts(b) == {
        "ipv4": 7996,
        "tcp": 7679,
        "syn_no_ack": 1,
        "backscatter_tcp": 7669,
        "backscatter_icmp": 153,
        "seq_eq_dst": 0,
    }
    flags = b["tcp_flags"][b["protocol"] == 6]
    assert int((flags == 0x12).sum()) == 6651 and int((flags == 0x04).sum()) == 813
    assert int((flags == 0x14).sum()) == 205


def test_a_gzipped_real_capture_reads_the_same(real_captures: Path, tmp_path: Path) -> None:
    src = real_captures / "amp.TCP.reflection.SYNACK.pcap"
    plain = all_of(open_capture(src))
    packed = all_of(
        open_capture(write(tmp_path, "amp.pcap.gz", gzip.compress(src.read_bytes())), chunk_size=8192)
    )
    for name in ("ts", "src", "dst", "tcp_flags", "tcp_seq", "icmp_type", "inner_dst"):
        assert np.array_equal(plain[name], packed[name])


TSHARK_FIELDS = [
    "ip.src",
    "ip.dst",
    "ip.proto",
    "ip.ttl",
    "ip.id",
    "ip.flags",
    "ip.frag_offset",
    "ip.len",
    "tcp.srcport",
    "tcp.dstport",
    "tcp.flags",
    "tcp.seq_raw",
    "tcp.ack_raw",
    "tcp.window_size_value",
    "tcp.hdr_len",
    "tcp.options.mss_val",
    "tcp.options.wscale.shift",
    "udp.srcport",
    "udp.dstport",
    "icmp.type",
    "icmp.code",
]


def tshark_rows(tshark: str, path: Path) -> list[dict[str, list[str]]]:
    """Per frame with an IPv4 header: field -> values (outer header first, quoted header next)."""
    cmd = [tshark, "-r", str(path), "-T", "fields", "-E", "separator=\t", "-E", "aggregator=|"]
    for f in TSHARK_FIELDS:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, check=True, timeout=120, text=True).stdout
    rows = []
    for line in out.splitlines():
        values = dict(zip(TSHARK_FIELDS, line.split("\t"), strict=True))
        if values["ip.src"]:
            rows.append({k: v.split("|") if v else [] for k, v in values.items()})
    return rows


def num(text: str) -> int:
    return int(text, 0)


@pytest.mark.parametrize("name", ["synscan.pcapng", "amp.TCP.reflection.SYNACK.pcap"])
def test_every_field_agrees_with_tshark_on_real_captures(
    real_captures: Path, tool: Callable[[str], str], name: str
) -> None:
    rows = tshark_rows(tool("tshark"), real_captures / name)
    b = all_of(open_capture(real_captures / name))
    assert len(rows) == len(b)
    for i, t in enumerate(rows):

        def col(c: str, i: int = i) -> int:
            return int(b[c][i])

        assert (col("src"), col("dst")) == (ip4(t["ip.src"][0]), ip4(t["ip.dst"][0])), i
        assert (col("protocol"), col("ttl"), col("ip_id"), col("ip_flags"), col("length")) == (
            num(t["ip.proto"][0]),
            num(t["ip.ttl"][0]),
            num(t["ip.id"][0]),
            num(t["ip.flags"][0]),
            num(t["ip.len"][0]),
        ), i
        assert col("frag_offset") == num(t["ip.frag_offset"][0])  # both in 8-byte units
        if col("ip_flags") & 1 or col("frag_offset"):
            continue  # tshark decodes the transport header only once it has reassembled the datagram
        if col("protocol") == 6:
            assert (col("sport"), col("dport"), col("tcp_flags"), col("tcp_seq"), col("tcp_ack")) == (
                num(t["tcp.srcport"][0]),
                num(t["tcp.dstport"][0]),
                num(t["tcp.flags"][0]),
                num(t["tcp.seq_raw"][0]),
                num(t["tcp.ack_raw"][0]),
            ), i
            assert col("tcp_window") == num(t["tcp.window_size_value"][0])
            assert col("tcp_opt_len") == num(t["tcp.hdr_len"][0]) - 20
            assert col("tcp_mss") == (num(t["tcp.options.mss_val"][0]) if t["tcp.options.mss_val"] else 0)
            wscale = t["tcp.options.wscale.shift"]
            assert col("tcp_wscale") == (num(wscale[0]) if wscale else 255)
        elif col("protocol") == 17:
            assert (col("sport"), col("dport")) == (num(t["udp.srcport"][0]), num(t["udp.dstport"][0]))
        elif col("protocol") == 1:
            assert (col("icmp_type"), col("icmp_code")) == (num(t["icmp.type"][0]), num(t["icmp.code"][0]))
            if len(t["ip.src"]) > 1:  # tshark decoded a quoted datagram
                assert (col("inner_src"), col("inner_dst")) == (ip4(t["ip.src"][1]), ip4(t["ip.dst"][1]))
                assert col("inner_protocol") == num(t["ip.proto"][1])
                ports = t["tcp.srcport"] + t["tcp.dstport"] or t["udp.srcport"] + t["udp.dstport"]
                if len(ports) == 2:
                    assert (col("inner_sport"), col("inner_dport")) == (num(ports[0]), num(ports[1]))


# --- captures written by outside tools, counted by those tools -------------------------------


def tool_count(tcpdump: str, path: Path) -> int:
    out = subprocess.run([tcpdump, "-n", "-r", str(path)], capture_output=True, check=True, timeout=120)
    return len(out.stdout.splitlines())


def capinfos_count(capinfos: str, path: Path) -> int:
    info = subprocess.run(
        [capinfos, "-c", "-M", str(path)], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    return int(info.split("Number of packets:")[1].split()[0])


def test_a_pcap_written_by_tcpdump_has_the_count_tcpdump_reads(
    real_captures: Path, tool: Callable[[str], str], tmp_path: Path
) -> None:
    tcpdump = tool("tcpdump")
    out = tmp_path / "filtered.pcap"
    subprocess.run(
        [
            tcpdump,
            "-r",
            str(real_captures / "amp.TCP.reflection.SYNACK.pcap"),
            "-w",
            str(out),
            "tcp or icmp or arp",
        ],
        capture_output=True,
        check=True,
        timeout=120,
    )
    cap = open_capture(out)
    b = all_of(cap)
    assert cap.stats.frames == tool_count(tcpdump, out) == len(b) + 4
    assert counts(b)["tcp"] == 7679 and set(b["protocol"].tolist()) == {1, 6}
    assert cap.stats.malformed == {"not_ip": 4}


def test_a_pcapng_written_by_editcap_has_the_count_capinfos_reads(
    real_captures: Path, tool: Callable[[str], str], tmp_path: Path
) -> None:
    out = tmp_path / "amp.pcapng"
    subprocess.run(
        [tool("editcap"), "-F", "pcapng", str(real_captures / "amp.TCP.reflection.SYNACK.pcap"), str(out)],
        check=True,
        timeout=120,
    )
    expected = capinfos_count(tool("capinfos"), out)
    cap = open_capture(out)
    b = all_of(cap)
    assert cap.stats.format == "pcapng" and cap.stats.frames == expected == 8000
    assert np.array_equal(
        b["ts"], all_of(open_capture(real_captures / "amp.TCP.reflection.SYNACK.pcap"))["ts"]
    )


def test_a_nanosecond_pcap_written_by_editcap_keeps_the_times(
    real_captures: Path, tool: Callable[[str], str], tmp_path: Path
) -> None:
    src = real_captures / "synscan.pcapng"
    out = tmp_path / "ns.pcap"
    subprocess.run([tool("editcap"), "-F", "nsecpcap", str(src), str(out)], check=True, timeout=120)
    assert out.read_bytes()[:4] == bytes.fromhex("4d3cb2a1")
    assert np.array_equal(all_of(open_capture(out))["ts"], all_of(open_capture(src))["ts"])


def test_mergecap_pcapng_with_two_link_types_reads_each_with_its_own(
    real_captures: Path, tool: Callable[[str], str], tmp_path: Path
) -> None:
    raw = write(tmp_path, "raw.pcap", pcap_file([ipv4(tcp(7, 8))] * 5, linktype=101, t0=T0 + 10**18))
    out = tmp_path / "merged.pcapng"
    subprocess.run(
        [tool("mergecap"), "-F", "pcapng", "-w", str(out), str(real_captures / "synscan.pcapng"), str(raw)],
        check=True,
        timeout=120,
    )
    cap = open_capture(out)
    b = all_of(cap)
    assert cap.stats.frames == capinfos_count(tool("capinfos"), out) == 2016  # tcpdump refuses mixed types
    assert int(((b["sport"] == 7) & (b["dport"] == 8)).sum()) == 5


def test_a_pcap_written_by_scapy_reads_like_tcpdump_counts(
    tool: Callable[[str], str], tmp_path: Path
) -> None:
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Dot1Q, Ether
    from scapy.utils import wrpcap

    pkts = [
        Ether() / IP(src="192.0.2.1", dst="198.51.100.2") / TCP(sport=1, dport=23, flags="S"),
        Ether() / Dot1Q(vlan=9) / IP(src="192.0.2.1", dst="198.51.100.3") / UDP(sport=2, dport=53),
        Ether() / IPv6(src="2001:db8::1", dst="2001:db8::2") / TCP(sport=3, dport=80, flags="SA"),
        Ether()
        / IP(src="192.0.2.9", dst="198.51.100.4")
        / ICMP(type=11)
        / IP(src="198.51.100.4", dst="203.0.113.5")
        / UDP(dport=33434),
    ]
    path = tmp_path / "scapy.pcap"
    wrpcap(str(path), pkts)
    b = all_of(open_capture(path))
    assert len(b) == tool_count(tool("tcpdump"), path) == 4
    assert b["dport"].tolist() == [23, 53, 80, 0] and b["ip_version"].tolist() == [4, 4, 6, 4]
    assert int(b["inner_dst"][3]) == ip4("203.0.113.5") and int(b["inner_dport"][3]) == 33434


def test_data_after_the_gzip_stream_is_reported_and_the_packets_kept(tmp_path: Path) -> None:
    path = write(tmp_path, "pad.pcap.gz", gzip.compress(pcap_file(SYNS[:20])) + bytes(512))
    cap = open_capture(path)
    assert len(all_of(cap)) == 20
    assert cap.stats.stopped is not None and "after the end of the gzip stream" in cap.stats.stopped


def test_records_longer_than_a_read_chunk_are_reassembled(tmp_path: Path) -> None:
    jumbo = ether(ipv4(tcp(payload=bytes(9000))))
    path = write(tmp_path, "jumbo.pcap", pcap_file([SYNS[0], jumbo, SYNS[1]]))
    got = all_of(open_capture(path, chunk_size=1024))
    assert got["length"].tolist() == [40, 9040, 40] and got["sport"].tolist() == [1024, 40000, 1025]


def test_the_summary_names_the_source_format_and_reasons(tmp_path: Path) -> None:
    path = write(tmp_path, "s.pcap", pcap_file([arp(), SYNS[0]]))
    cap = open_capture(path)
    all_of(cap)
    size = path.stat().st_size
    assert (
        cap.stats.summary()
        == f"{path}: pcap, 2 frames, 1 packets in 1 batches, {size} bytes; skipped: not_ip=1"
    )
