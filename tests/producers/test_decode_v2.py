"""PacketBatch version 2 columns from byte-literal packets: IPv6 quotes, 32-bit lengths, the
captured length, the truncation mark, and the IPv4 reserved bit apart from DF and MF."""

from __future__ import annotations

import ipaddress
import struct
from typing import Any

from producers.decode import DecodeResult, decode
from producers.transport import TRUNC_L4, TRUNC_QUOTE, TRUNC_TCP_OPTIONS
from schemas.batch import column_dtypes
from tests.producers.pktbuild import ZMAP_OPTIONS, ether, frames_of, icmp, ip4, ipv4, ipv6, tcp, udp

DARK6 = ipaddress.IPv6Address("2001:db8:dead::7").packed
VICTIM6 = ipaddress.IPv6Address("2001:db8:beef::80").packed
ROUTER6 = ipaddress.IPv6Address("2001:db8:1::1").packed
ETH = 14


def run(frames: list[bytes], caplens: list[int | None] | None = None) -> DecodeResult:
    return decode(frames_of(frames, 1, caplens=caplens), sensor_id="s1")


def row(result: DecodeResult, i: int = 0) -> dict[str, Any]:
    return {name: result.batch[name][i] for name in column_dtypes()}


def jumbo_hop_by_hop(nh: int, jumbo: int, pads: int = 0) -> bytes:
    """A hop-by-hop header holding a Jumbo Payload option (RFC 2675) after ``pads`` Pad1s."""
    body = bytes(pads) + struct.pack(">BBI", 0xC2, 4, jumbo)
    fill = -(len(body) + 2) % 8
    if fill:  # a PadN option fills the header to a multiple of 8 bytes
        body += bytes([1, fill - 2]) + bytes(fill - 2)
    return bytes([nh, (len(body) + 2) // 8 - 1]) + body


# --- lengths -----------------------------------------------------------------------------------


def test_ipv6_jumbogram_takes_its_length_from_the_jumbo_payload_option() -> None:
    jumbo = 100_000  # hop-by-hop header + UDP header + payload, as the option counts it
    pkt = ether(ipv6(jumbo_hop_by_hop(17, jumbo) + udp(7, 8), nh=0, plen=0), 0x86DD)
    r = row(run([pkt]))
    assert r["total_length"] == jumbo + 40
    assert r["length"] == 65535  # version 1's 16-bit column, clipped
    assert r["protocol"] == 17 and r["sport"] == 7 and r["dport"] == 8
    assert r["caplen"] == len(pkt) - ETH
    assert r["truncated"] == 0  # the capture ends before the packet, but after every field read


def test_jumbo_payload_option_after_padding_is_found() -> None:
    hbh = jumbo_hop_by_hop(6, 70_000, pads=4)
    assert len(hbh) == 16
    r = row(run([ether(ipv6(hbh + tcp(1, 2), nh=0, plen=0), 0x86DD)]))
    assert r["total_length"] == 70_040 and r["protocol"] == 6 and r["dport"] == 2


def test_ipv6_payload_length_above_the_old_column_is_not_clipped() -> None:
    r = row(run([ether(ipv6(udp(), nh=17, plen=65535), 0x86DD)]))
    assert r["total_length"] == 65535 + 40 and r["length"] == 65535


def test_ipv4_length_is_the_header_total_length_in_both_columns() -> None:
    pkt = ether(ipv4(tcp(1, 2)))
    r = row(run([pkt]))
    assert r["total_length"] == r["length"] == 40 and r["caplen"] == 40


# --- the IPv4 reserved bit -------------------------------------------------------------------


def test_ipv4_reserved_bit_is_its_own_column_and_not_in_ip_flags() -> None:
    res = run([ether(ipv4(udp(), flags=0b110)), ether(ipv4(udp(), flags=0b101, frag=0)), ether(ipv4(udp()))])
    assert res.batch["ip_reserved"].tolist() == [1, 1, 0]
    assert res.batch["ip_flags"].tolist() == [2, 1, 0]  # DF, MF only


# --- ICMPv6 errors quote IPv6 addresses ----------------------------------------------------------


def test_icmpv6_error_quoting_tcp_gives_inner_ipv6_addresses_and_ports() -> None:
    # The spoofed SYN went from a darknet address to the victim; a router answered the darknet.
    quoted = ipv6(tcp(40000, 443)[:8], nh=6, src=DARK6, dst=VICTIM6, plen=20)
    pkt = ether(ipv6(icmp(1, 1, quote=quoted), nh=58, src=ROUTER6, dst=DARK6), 0x86DD)
    r = row(run([pkt]))
    assert r["protocol"] == 58 and r["icmp_type"] == 1 and r["inner_protocol"] == 6
    assert bytes(r["inner_src6"]) == DARK6 and bytes(r["inner_dst6"]) == VICTIM6
    assert r["inner_sport"] == 40000 and r["inner_dport"] == 443
    assert r["inner_src"] == 0 and r["inner_dst"] == 0 and r["truncated"] == 0


def test_icmpv6_time_exceeded_quoting_udp_gives_inner_ipv6_addresses_and_ports() -> None:
    quoted = ipv6(udp(5353, 53), nh=17, src=DARK6, dst=VICTIM6)
    pkt = ether(ipv6(icmp(3, 0, quote=quoted), nh=58, src=ROUTER6, dst=DARK6), 0x86DD)
    r = row(run([pkt]))
    assert r["icmp_type"] == 3 and r["inner_protocol"] == 17
    assert bytes(r["inner_src6"]) == DARK6 and bytes(r["inner_dst6"]) == VICTIM6
    assert (r["inner_sport"], r["inner_dport"]) == (5353, 53)


def test_icmpv4_error_leaves_the_ipv6_quote_columns_empty() -> None:
    quoted = ipv4(udp(1, 2), proto=17, src="198.51.100.7", dst="203.0.113.9")
    r = row(run([ether(ipv4(icmp(3, 3, quote=quoted), proto=1))]))
    assert r["inner_dst"] == ip4("203.0.113.9") and bytes(r["inner_dst6"]) == bytes(16)


def test_icmpv6_quote_cut_by_the_snaplen_keeps_what_was_captured_and_is_marked() -> None:
    quoted = ipv6(udp(5353, 53), nh=17, src=DARK6, dst=VICTIM6)
    pkt = ether(ipv6(icmp(1, 4, quote=quoted), nh=58, src=ROUTER6, dst=DARK6), 0x86DD)
    r = row(run([pkt], caplens=[ETH + 40 + 8 + 30]))  # the quote's destination is cut
    assert bytes(r["inner_src6"]) == DARK6 and bytes(r["inner_dst6"]) == bytes(16)
    assert r["truncated"] == TRUNC_QUOTE


# --- truncation --------------------------------------------------------------------------------


def test_syn_cut_inside_its_tcp_options_is_marked_and_keeps_the_options_before_the_cut() -> None:
    syn = ether(ipv4(tcp(40000, 23, window=65535, options=ZMAP_OPTIONS)))
    r = row(run([syn], caplens=[ETH + 20 + 20 + 6]))  # MSS captured, the rest of the options not
    assert r["truncated"] == TRUNC_TCP_OPTIONS
    assert r["caplen"] == 46 and r["total_length"] == 52
    assert r["tcp_mss"] == 1460 and r["tcp_window"] == 65535 and r["tcp_flags"] == 2


def test_syn_cut_inside_its_tcp_header_marks_the_header_and_the_options() -> None:
    syn = ether(ipv4(tcp(40000, 23, seq=7, options=ZMAP_OPTIONS)))
    r = row(run([syn], caplens=[ETH + 20 + 10]))
    assert r["truncated"] == TRUNC_L4 | TRUNC_TCP_OPTIONS
    assert r["tcp_seq"] == 7 and r["tcp_flags"] == 0  # not captured: 0, and marked as such


def test_whole_packets_are_not_marked() -> None:
    res = run([ether(ipv4(tcp(options=ZMAP_OPTIONS))), ether(ipv4(udp(), proto=17))])
    assert res.batch["truncated"].tolist() == [0, 0]
    assert res.batch["caplen"].tolist() == res.batch["total_length"].tolist()


def test_icmp_error_with_a_short_quote_but_captured_whole_is_not_marked() -> None:
    quoted = ipv4(b"", proto=17)  # the router quoted the header only: normal, not truncation
    r = row(run([ether(ipv4(icmp(3, quote=quoted), proto=1))]))
    assert r["inner_protocol"] == 17 and r["truncated"] == 0


def test_icmp_error_whose_quoted_ports_the_snaplen_cut_is_marked() -> None:
    quoted = ipv4(udp(1, 2), proto=17)
    pkt = ether(ipv4(icmp(3, quote=quoted), proto=1))
    r = row(run([pkt], caplens=[ETH + 20 + 8 + 22]))
    assert r["inner_protocol"] == 17 and r["inner_sport"] == 0 and r["truncated"] == TRUNC_QUOTE
