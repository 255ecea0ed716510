"""producers.decode: frames -> PacketBatch columns, one layer at a time, with byte-built frames."""

from __future__ import annotations

from typing import Any

import pytest

from producers.decode import DecodeResult, decode
from producers.frames import Frames
from schemas.batch import column_dtypes
from tests.producers.pktbuild import (
    ZMAP_KINDS,
    ZMAP_OPTIONS,
    arp,
    ether,
    ext6,
    frag6,
    frames_of,
    icmp,
    ip4,
    ipv4,
    ipv6,
    null,
    sll,
    sll2,
    tcp,
    udp,
)


def run(
    frames: list[bytes], linktypes: int | list[int] = 1, caplens: list[int | None] | None = None
) -> DecodeResult:
    return decode(frames_of(frames, linktypes, caplens=caplens), sensor_id="s1", batch_seq=3)


def row(result: DecodeResult, i: int = 0) -> dict[str, Any]:
    return {name: result.batch[name][i] for name in column_dtypes()}


def problems(result: DecodeResult) -> dict[str, list[int]]:
    return {str(k): v.tolist() for k, v in result.problems.items()}


SYN = ether(ipv4(tcp(40000, 23, seq=ip4("198.51.100.7"), window=1024, options=ZMAP_OPTIONS), ttl=250))


# --- IPv4 / TCP ------------------------------------------------------------------------------


def test_ipv4_tcp_syn_fills_every_header_column() -> None:
    r = row(run([SYN]))
    assert r["ip_version"] == 4
    assert r["src"] == ip4("192.0.2.1") and r["dst"] == ip4("198.51.100.7")
    assert r["protocol"] == 6 and r["sport"] == 40000 and r["dport"] == 23
    assert r["tcp_flags"] == 0x02 and r["tcp_seq"] == ip4("198.51.100.7") and r["tcp_ack"] == 0
    assert r["tcp_window"] == 1024 and r["ttl"] == 250 and r["ip_id"] == 54321
    assert r["ip_flags"] == 0 and r["frag_offset"] == 0 and r["length"] == 20 + 32
    assert r["tcp_opt_len"] == 12


def test_batch_carries_sensor_id_sequence_and_schema_dtypes() -> None:
    res = run([SYN, SYN])
    assert res.batch.sensor_id == "s1" and res.batch.batch_seq == 3 and len(res.batch) == 2
    for name, dt in column_dtypes().items():
        assert res.batch[name].dtype == dt
    assert res.problems == {}


def test_timestamps_pass_through_in_nanoseconds() -> None:
    res = run([SYN, SYN])
    assert res.batch["ts"].tolist() == [1_650_000_000_000_000_000, 1_650_000_000_000_001_000]


def test_zmap_options_pack_kinds_from_the_most_significant_byte() -> None:
    r = row(run([SYN]))
    assert int(r["tcp_opt_kinds"]) == ZMAP_KINDS == 0x0201030101040000
    assert r["tcp_mss"] == 1460 and r["tcp_wscale"] == 8


def test_no_options_leave_kinds_zero_mss_zero_and_wscale_absent() -> None:
    r = row(run([ether(ipv4(tcp()))]))
    assert r["tcp_opt_len"] == 0 and r["tcp_opt_kinds"] == 0 and r["tcp_mss"] == 0 and r["tcp_wscale"] == 255


def test_only_the_first_eight_option_kinds_are_kept_but_later_mss_is_read() -> None:
    opts = bytes([1] * 9) + bytes.fromhex("020405b4") + bytes.fromhex("030307")
    r = row(run([ether(ipv4(tcp(options=opts)))]))
    assert int(r["tcp_opt_kinds"]) == 0x0101010101010101
    assert r["tcp_mss"] == 1460 and r["tcp_wscale"] == 7 and r["tcp_opt_len"] == 16


def test_end_of_options_stops_the_walk() -> None:
    opts = bytes.fromhex("020405b4 00 030308")  # EOL before a window scale that must be ignored
    r = row(run([ether(ipv4(tcp(options=opts)))]))
    assert int(r["tcp_opt_kinds"]) == 0x0200000000000000 and r["tcp_wscale"] == 255


def test_timestamp_and_sack_options_in_a_linux_syn() -> None:
    opts = bytes.fromhex("020405b4 0402 080a0001e24000000000 01 030307")
    r = row(run([ether(ipv4(tcp(options=opts)))]))
    assert int(r["tcp_opt_kinds"]) == 0x0204080103000000 and r["tcp_mss"] == 1460 and r["tcp_wscale"] == 7


def test_option_with_impossible_length_is_flagged_and_the_walk_stops() -> None:
    opts = bytes.fromhex("020405b4 0301")  # window scale claiming length 1
    res = run([ether(ipv4(tcp(options=opts)))])
    r = row(res)
    assert r["tcp_mss"] == 1460 and r["tcp_wscale"] == 255
    assert problems(res) == {"bad_l4_header": [0]}


def test_tcp_data_offset_below_five_is_flagged_but_the_packet_kept() -> None:
    res = run([ether(ipv4(tcp(doff=3)))])
    assert len(res.batch) == 1 and row(res)["tcp_opt_len"] == 0
    assert problems(res) == {"bad_l4_header": [0]}


def test_ipv4_options_move_the_transport_header() -> None:
    r = row(run([ether(ipv4(tcp(1, 2), options=bytes.fromhex("94040000")))]))  # router alert, IHL 6
    assert r["sport"] == 1 and r["dport"] == 2 and r["length"] == 24 + 20


def test_ipv4_flags_and_fragment_offset() -> None:
    r = row(run([ether(ipv4(udp(), flags=2))]))
    assert r["ip_flags"] == 2 and r["frag_offset"] == 0


def test_only_the_first_ipv4_fragment_has_ports() -> None:
    first = ether(ipv4(udp(1111, 2222), proto=17, flags=1, ident=7))
    later = ether(ipv4(b"\x00" * 16, proto=17, frag=185, ident=7))
    res = run([first, later])
    assert res.batch["sport"].tolist() == [1111, 0] and res.batch["dport"].tolist() == [2222, 0]
    assert res.batch["ip_flags"].tolist() == [1, 0] and res.batch["frag_offset"].tolist() == [0, 185]
    assert res.batch["protocol"].tolist() == [17, 17]


def test_udp_ports() -> None:
    r = row(run([ether(ipv4(udp(123, 161), proto=17))]))
    assert r["protocol"] == 17 and r["sport"] == 123 and r["dport"] == 161 and r["tcp_flags"] == 0


def test_other_protocols_keep_only_the_protocol_number() -> None:
    r = row(run([ether(ipv4(b"\x00\x00\x08\x00" + bytes(20), proto=47))]))  # GRE
    assert r["protocol"] == 47 and r["sport"] == 0 and r["dport"] == 0 and r["icmp_type"] == 0


# --- ICMP ------------------------------------------------------------------------------------


def test_icmp_echo_reply_type_and_code() -> None:
    r = row(run([ether(ipv4(icmp(0), proto=1))]))
    assert r["protocol"] == 1 and r["icmp_type"] == 0 and r["icmp_code"] == 0 and r["inner_protocol"] == 0


def test_icmp_unreachable_reports_the_quoted_datagram() -> None:
    quoted = ipv4(tcp(8080, 443)[:8], src="203.0.113.9", dst="192.0.2.200", proto=6)
    r = row(run([ether(ipv4(icmp(3, 1, quote=quoted), proto=1))]))
    assert r["icmp_type"] == 3 and r["icmp_code"] == 1
    assert (
        r["inner_protocol"] == 6
        and r["inner_src"] == ip4("203.0.113.9")
        and r["inner_dst"] == ip4("192.0.2.200")
    )
    assert r["inner_sport"] == 8080 and r["inner_dport"] == 443


@pytest.mark.parametrize("icmp_type", [4, 5, 11, 12])
def test_every_icmp_error_type_quotes_an_inner_header(icmp_type: int) -> None:
    quoted = ipv4(udp(53, 3333)[:8], src="203.0.113.9", dst="192.0.2.200", proto=17)
    r = row(run([ether(ipv4(icmp(icmp_type, quote=quoted), proto=1))]))
    assert r["inner_protocol"] == 17 and r["inner_dst"] == ip4("192.0.2.200") and r["inner_dport"] == 3333


def test_icmp_echo_request_is_not_read_as_an_error() -> None:
    body = ipv4(udp(53, 3333), proto=17)  # echo payload that merely looks like a datagram
    r = row(run([ether(ipv4(icmp(8, quote=body), proto=1))]))
    assert r["icmp_type"] == 8 and r["inner_protocol"] == 0 and r["inner_src"] == 0


def test_icmp_error_with_a_short_quote_fills_what_is_there_without_a_problem() -> None:
    quoted = ipv4(b"", src="203.0.113.9", dst="192.0.2.200", proto=6)[:16]  # cut inside the addresses
    res = run([ether(ipv4(icmp(11, quote=quoted), proto=1))])
    r = row(res)
    assert r["inner_protocol"] == 6 and r["inner_src"] == ip4("203.0.113.9") and r["inner_dst"] == 0
    assert r["inner_sport"] == 0 and res.problems == {}


def test_icmp_error_quoting_a_later_fragment_has_no_inner_ports() -> None:
    quoted = ipv4(bytes(8), proto=17, frag=100)
    r = row(run([ether(ipv4(icmp(3, quote=quoted), proto=1))]))
    assert r["inner_protocol"] == 17 and r["inner_sport"] == 0 and r["inner_dport"] == 0


def test_icmpv6_error_reports_inner_protocol_and_ports() -> None:
    quoted = ipv6(udp(4000, 53)[:8], nh=17)
    r = row(run([ether(ipv6(icmp(1, 4, quote=quoted), nh=58), 0x86DD)]))
    assert r["ip_version"] == 6 and r["protocol"] == 58 and r["icmp_type"] == 1 and r["icmp_code"] == 4
    assert r["inner_protocol"] == 17 and r["inner_sport"] == 4000 and r["inner_dport"] == 53
    assert r["inner_src"] == 0  # the inner address columns hold IPv4 only


# --- IPv6 ------------------------------------------------------------------------------------


def test_ipv6_tcp_fills_the_16_byte_address_columns() -> None:
    res = run([ether(ipv6(tcp(5, 6, flags=0x12), hlim=33), 0x86DD)])
    r = row(res)
    assert r["ip_version"] == 6 and r["src"] == 0 and r["dst"] == 0
    assert bytes(r["src6"]) == bytes(15) + b"\x01"
    assert bytes(r["dst6"]).hex() == "20010db8000000000000000000000007"
    assert r["ttl"] == 33 and r["length"] == 40 + 20 and r["tcp_flags"] == 0x12 and r["sport"] == 5


def test_ipv6_extension_headers_are_skipped_to_the_transport_header() -> None:
    payload = ext6(60) + ext6(43, bytes(14)) + ext6(17) + udp(7, 8)
    r = row(run([ether(ipv6(payload, nh=0), 0x86DD)]))
    assert r["protocol"] == 17 and r["sport"] == 7 and r["dport"] == 8


def test_ipv6_fragment_header_gives_offset_more_flag_and_id() -> None:
    first = ether(ipv6(frag6(6, 0, True, 0xABCD1234) + tcp(9, 10), nh=44), 0x86DD)
    later = ether(ipv6(frag6(6, 100, False, 0xABCD1234) + bytes(16), nh=44), 0x86DD)
    res = run([first, later])
    assert res.batch["protocol"].tolist() == [6, 6]
    assert res.batch["frag_offset"].tolist() == [0, 100] and res.batch["ip_flags"].tolist() == [1, 0]
    assert res.batch["ip_id"].tolist() == [0x1234, 0x1234]
    assert res.batch["sport"].tolist() == [9, 0]


def test_ipv6_later_fragment_stops_the_extension_walk() -> None:
    later = ether(ipv6(frag6(60, 100, False, 1) + ext6(6) + bytes(16), nh=44), 0x86DD)
    r = row(run([later]))
    assert r["protocol"] == 60 and r["frag_offset"] == 100 and r["sport"] == 0


def test_ipv6_jumbo_length_is_clipped_to_the_column_width() -> None:
    r = row(run([ether(ipv6(udp(), nh=17, plen=65535), 0x86DD)]))
    assert r["length"] == 65535


# --- link layers -----------------------------------------------------------------------------

PKT4 = ipv4(tcp(1000, 2000))
PKT6 = ipv6(tcp(1000, 2000))


@pytest.mark.parametrize(
    ("linktype", "frame", "version"),
    [
        (1, ether(PKT4), 4),
        (1, ether(PKT4, vlans=[(0x8100, 10)]), 4),
        (1, ether(PKT4, vlans=[(0x88A8, 100), (0x8100, 10)]), 4),
        (1, ether(PKT6, 0x86DD, vlans=[(0x8100, 3)]), 6),
        (101, PKT4, 4),
        (101, PKT6, 6),
        (12, PKT4, 4),
        (14, PKT6, 6),
        (228, PKT4, 4),
        (229, PKT6, 6),
        (113, sll(PKT4), 4),
        (113, sll(PKT6, 0x86DD), 6),
        (113, sll(b"\x00\x05\x08\x00" + PKT4, 0x8100), 4),  # VLAN tag left in
        (276, sll2(PKT4), 4),
        (276, sll2(PKT6, 0x86DD), 6),
        (0, null(PKT4), 4),
        (0, null(PKT4, big=True), 4),
        (0, null(PKT6, 30), 6),
        (0, null(PKT6, 24, big=True), 6),
        (0, null(PKT6, 10), 6),
        (108, null(PKT4, big=True), 4),
        (108, null(PKT6, 28, big=True), 6),
    ],
)
def test_every_supported_link_type_reaches_the_ports(linktype: int, frame: bytes, version: int) -> None:
    res = run([frame], linktype)
    assert res.problems == {}
    r = row(res)
    assert r["ip_version"] == version
    assert r["sport"] == 1000 and r["dport"] == 2000 and r["tcp_flags"] == 2


def test_mixed_link_types_in_one_call_keep_frame_order() -> None:
    res = run(
        [ether(ipv4(udp(1, 1), proto=17)), ipv4(udp(2, 2), proto=17), sll(ipv4(udp(3, 3), proto=17))],
        [1, 101, 113],
    )
    assert res.batch["sport"].tolist() == [1, 2, 3]


def test_non_ip_frames_are_counted_not_emitted() -> None:
    res = run([arp(), SYN, ether(b"\x00" * 30, 0x8847)])
    assert len(res.batch) == 1 and problems(res) == {"not_ip": [0, 2]}


def test_a_third_vlan_tag_is_not_ip() -> None:
    res = run([ether(PKT4, vlans=[(0x88A8, 1), (0x8100, 2), (0x8100, 3)])])
    assert problems(res) == {"not_ip": [0]}


def test_loopback_family_other_than_ip_is_not_ip() -> None:
    assert problems(run([null(PKT4, 7)], 0)) == {"not_ip": [0]}


def test_unknown_link_types_are_counted_per_frame() -> None:
    res = run([PKT4, SYN, PKT4], [147, 1, 147])
    assert len(res.batch) == 1 and problems(res) == {"unknown_linktype": [0, 2]}


# --- malformed and truncated -----------------------------------------------------------------


def test_frame_cut_inside_the_link_header_is_truncated_link() -> None:
    assert problems(run([SYN], caplens=[10])) == {"truncated_link": [0]}
    assert problems(run([ether(PKT4, vlans=[(0x8100, 1)])], caplens=[16])) == {"truncated_link": [0]}


@pytest.mark.parametrize("caplen", [14, 15, 24, 33])
def test_frame_cut_inside_the_ipv4_header_is_dropped_as_truncated_ip(caplen: int) -> None:
    res = run([SYN, SYN], caplens=[caplen, None])
    assert len(res.batch) == 1 and problems(res) == {"truncated_ip": [0]}


def test_frame_cut_inside_ipv4_options_is_truncated_ip() -> None:
    frame = ether(ipv4(tcp(), options=bytes(8)))
    assert problems(run([frame], caplens=[14 + 24])) == {"truncated_ip": [0]}


def test_frame_cut_inside_the_ipv6_header_or_its_extensions_is_truncated_ip() -> None:
    whole = ether(ipv6(ext6(6) + tcp(), nh=0), 0x86DD)
    assert problems(run([whole, whole], caplens=[14 + 39, 14 + 44])) == {"truncated_ip": [0, 1]}


def test_version_nibble_disagreeing_with_the_link_layer_is_a_bad_ip_header() -> None:
    assert problems(run([ether(PKT6, 0x0800)])) == {"bad_ip_header": [0]}
    assert problems(run([b"\x50" + PKT4[1:]], 101)) == {"bad_ip_header": [0]}
    assert problems(run([b"\x55" + PKT4[1:], b"\x05" + PKT4[1:]], 101)) == {"bad_ip_header": [0, 1]}
    assert problems(run([PKT6], 228)) == {"bad_ip_header": [0]}


def test_ihl_below_five_is_a_bad_ip_header() -> None:
    assert problems(run([ether(b"\x44" + PKT4[1:])])) == {"bad_ip_header": [0]}


@pytest.mark.parametrize(
    ("cut", "sport", "dport", "seq", "flags", "window"),
    [
        (0, 0, 0, 0, 0, 0),
        (3, 0, 0, 0, 0, 0),
        (4, 40000, 23, 0, 0, 0),
        (8, 40000, 23, ip4("198.51.100.7"), 0, 0),
        (14, 40000, 23, ip4("198.51.100.7"), 2, 0),
        (16, 40000, 23, ip4("198.51.100.7"), 2, 1024),
    ],
)
def test_tcp_header_cut_short_keeps_the_fields_it_holds_fully(
    cut: int, sport: int, dport: int, seq: int, flags: int, window: int
) -> None:
    res = run([SYN], caplens=[14 + 20 + cut])
    r = row(res)
    assert (r["sport"], r["dport"], r["tcp_seq"], r["tcp_flags"], r["tcp_window"]) == (
        sport,
        dport,
        seq,
        flags,
        window,
    )
    assert r["src"] == ip4("192.0.2.1") and r["tcp_opt_kinds"] == 0 and r["tcp_wscale"] == 255
    assert problems(res) == {"truncated_l4": [0]}


def test_tcp_options_cut_short_keep_the_options_before_the_cut() -> None:
    res = run([SYN], caplens=[14 + 20 + 20 + 5])  # MSS and NOP captured, window scale cut
    r = row(res)
    assert int(r["tcp_opt_kinds"]) == 0x0201000000000000 and r["tcp_mss"] == 1460 and r["tcp_opt_len"] == 12
    assert problems(res) == {"truncated_l4": [0]}


def test_udp_and_icmp_cut_short_are_truncated_l4() -> None:
    frames = [ether(ipv4(udp(7, 9), proto=17)), ether(ipv4(icmp(3, 2, quote=PKT4), proto=1))]
    res = run(frames, caplens=[14 + 20 + 4, 14 + 20 + 2])
    assert res.batch["dport"].tolist() == [9, 0] and res.batch["icmp_code"].tolist() == [0, 2]
    assert res.batch["inner_protocol"].tolist() == [0, 0]
    assert problems(res) == {"truncated_l4": [0, 1]}


def test_no_frames_make_an_empty_batch() -> None:
    res = decode(Frames.empty())
    assert len(res.batch) == 0 and res.problems == {}


def test_problem_indices_refer_to_the_frames_given() -> None:
    frames = [arp(), SYN, ether(ipv4(tcp())), arp(), SYN]
    res = run(frames, caplens=[None, None, 14 + 20 + 6, None, None])
    assert problems(res) == {"not_ip": [0, 3], "truncated_l4": [2]}
    assert res.batch["sport"].tolist() == [40000, 40000, 40000]
