"""Scanner probes built byte for byte from the scanners' own source, decoded by the sensor's
decoder and judged by the fingerprint rules: each is matched by its own rule and by no other."""

from __future__ import annotations

import struct

import numpy as np

from producers.decode import decode
from schemas.batch import PacketBatch
from schemas.fingerprints import Fingerprint
from streams.fingerprints import RULES, SourceVerdicts, packet_flags, packet_rules
from tests.producers.pktbuild import ether, frames_of, ip4

SRC, DST = ip4("203.0.113.9"), ip4("198.51.100.7")


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071), as zmap_ip_checksum() / tcp_checksum() compute it."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f">{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4_header(total: int, ident: bytes, ttl: int, proto: int, src: int, dst: int) -> bytes:
    """An option-less IPv4 header with ip_off 0 (DF clear) and its checksum."""
    head = struct.pack(">BBH2sHBBHII", 0x45, 0, total, ident, 0, ttl, proto, 0, src, dst)
    return head[:10] + struct.pack(">H", checksum(head)) + head[12:]


def l4_checksum(proto: int, src: int, dst: int, segment: bytes) -> int:
    return checksum(struct.pack(">IIBBH", src, dst, 0, proto, len(segment)) + segment)


def decoded(frames: list[bytes]) -> PacketBatch:
    return decode(frames_of(frames), sensor_id="s", batch_seq=0).batch


def rule_names(b: PacketBatch) -> list[set[str]]:
    hits = packet_rules(b)
    return [{r.name for i, r in enumerate(RULES) if h & (1 << i)} for h in hits.tolist()]


# --- ZMap >= 4.1 ----------------------------------------------------------------------------
# zmap/zmap @ 8de8833 (v4.3.3+):
# - src/send.c:411-421: validate_gen(src_ip, current_ip, htons(current_port), validation) (an AES-128
#   block under a key drawn at start, validate.c:27-31), ttl = zconf.probe_ttl, and make_packet(...,
#   ip_id = (uint16_t)(validation[3] & 0xFFFF)). On a little-endian host that id, stored as is,
#   puts validation bytes 12 and 13 on the wire; th_seq = validation[0] puts bytes 0..3.
# - src/state.c:59 .probe_ttl = IPDEFTTL (64); :69-70 source ports 32768..61000.
# - src/probe_modules/packet.c:85-98 make_ip_header(): version 4, IHL 5, TOS 0, ip_off 0, proto;
#   :108-119 make_tcp_header(): th_off 5, flags TH_SYN, th_win htons(65535), urp 0;
#   :241-266 set_tcp_options(WINDOWS_OS_OPTIONS), the default since #855 (module_tcp_synscan.c:
#   47-66): set_mss_option() 02 04 05 b4, set_nop_plus_windows_scale() 01 03 03 08,
#   set_nop_plus_sack_permitted() 01 01 04 02; th_off 8, IP total length 20 + 32.
# - src/probe_modules/packet.h:165-170 get_src_port(): 32768 + (validation[1] + probe_num) % 28233.
# - src/probe_modules/module_tcp_synscan.c:100-131 synscan_make_packet(): src, dst, ttl, sport,
#   dport, seq, tcp checksum, ip_id, ip checksum.
ZMAP41_OPTIONS = bytes.fromhex("020405b40103030801010402")


def zmap41_probe(validation: bytes, dport: int, probe_num: int = 0) -> bytes:
    """One ZMap >= 4.1 SYN probe frame; ``validation`` is the 16-byte AES block of send.c."""
    v1 = int.from_bytes(validation[4:8], "little")
    sport = 32768 + (v1 + probe_num) % (61000 - 32768 + 1)
    tcp = struct.pack(">HH4sIBBHHH", sport, dport, validation[0:4], 0, 8 << 4, 0x02, 65535, 0, 0)
    tcp += ZMAP41_OPTIONS
    tcp = tcp[:16] + struct.pack(">H", l4_checksum(6, SRC, DST, tcp)) + tcp[18:]
    ip = ipv4_header(20 + len(tcp), validation[12:14], 64, 6, SRC, DST)
    return ether(ip + tcp)


def test_zmap41_probes_from_its_source_are_zmap_and_nothing_else() -> None:
    # An AES block under a key no observer knows is, to the observer, 16 random bytes.
    rng = np.random.default_rng(41)
    frames = [zmap41_probe(rng.bytes(16), int(p)) for p in rng.integers(1, 65536, 300)]
    b = decoded(frames)
    assert len(b) == 300
    assert (b["ttl"] == 64).all() and (b["tcp_window"] == 65535).all() and (b["ip_flags"] == 0).all()
    assert len(np.unique(b["ip_id"])) > 250  # the id is pseudo-random, not 54321
    assert (packet_flags(b) == Fingerprint.ZMAP).all()
    assert rule_names(b) == [{"zmap41"}] * 300


def test_zmap41_rule_is_weak_so_one_probe_does_not_confirm_but_a_scan_does() -> None:
    rng = np.random.default_rng(7)
    verdicts = SourceVerdicts()
    one = decoded([zmap41_probe(rng.bytes(16), 443)])
    assert not verdicts.update(one, packet_rules(one)).any()  # a single-address sensor's view
    scan = decoded([zmap41_probe(rng.bytes(16), 443) for _ in range(4)])
    assert (verdicts.update(scan, packet_rules(scan)) == Fingerprint.ZMAP).all()


def test_windows_syn_with_the_same_option_bytes_is_not_zmap() -> None:
    # A Windows 10 SYN: TTL 128, DF set, window 64240, the same 12 option bytes.
    tcp = struct.pack(">HHIIBBHHH", 50123, 445, 0x1234, 0, 8 << 4, 0x02, 64240, 0, 0) + ZMAP41_OPTIONS
    ip = struct.pack(">BBHHHBBHII", 0x45, 0, 52, 0x5A5A, 0x4000, 128, 6, 0, SRC, DST)
    assert not packet_flags(decoded([ether(ip + tcp)])).any()


# --- "SYN only" is SYN alone ------------------------------------------------------------------


def old_zmap_syn(flags: int) -> bytes:
    """ZMap before 4.1 (packet.c make_ip_header / make_tcp_header): id 54321, TTL 255, DF clear,
    window 65535, no options; ``flags`` in the TCP flags byte."""
    tcp = struct.pack(">HHIIBBHHH", 40000, 23, 0x01020304, 0, 5 << 4, flags, 65535, 0, 0)
    return ether(ipv4_header(40, struct.pack(">H", 54321), 255, 6, SRC, DST) + tcp)


def test_syn_with_ece_and_cwr_is_not_a_zmap_probe() -> None:
    b = decoded([old_zmap_syn(0x02), old_zmap_syn(0xC2), old_zmap_syn(0x42), old_zmap_syn(0x82)])
    assert b["tcp_flags"].tolist() == [0x02, 0xC2, 0x42, 0x82]
    assert packet_flags(b).tolist() == [Fingerprint.ZMAP, 0, 0, 0]


# --- Masscan UDP ------------------------------------------------------------------------------
# robertdavidgraham/masscan @ 2be4093: src/templ-pkt.c:56-73 default_udp_template (TTL 255,
# ip_off 0); template_set_target_ipv4() (templ-pkt.c:877-): port_them &= 0xFFFF for UDP, then
# udp_payload_fixup() copies the port's payload and calls its set_cookie(seqno); ip_id = ip_them ^
# port_them ^ seqno (the same formula as TCP); UDP length, checksum. templ-payloads.c:76-84 the
# DNS payload (version.bind TXT CHAOS) set by dns_set_cookie() (proto-dns.c:334-342: the low 16
# bits of the cookie as the transaction id); a port without a payload sends none (length 8).
DNS_VERSION_BIND = (
    bytes.fromhex("50b601200001000000000000") + b"\x07version\x04bind\x00" + b"\x00\x10\x00\x03"
)


def masscan_udp_probe(dport: int, cookie: int, payload: bytes, sport: int = 61234) -> bytes:
    """One Masscan UDP probe; a payload with a cookie field gets the cookie's low 16 bits."""
    if dport in (53, 137, 111, 2049):  # the ports whose payload takes dns_set_cookie()
        payload = struct.pack(">H", cookie & 0xFFFF) + payload[2:]
    udp = struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload
    udp = udp[:6] + struct.pack(">H", l4_checksum(17, SRC, DST, udp)) + udp[8:]
    ident = (DST ^ dport ^ cookie) & 0xFFFF
    return ether(ipv4_header(20 + len(udp), struct.pack(">H", ident), 255, 17, SRC, DST) + udp)


def test_masscan_udp_cookie_is_in_the_payload_so_the_header_only_rule_does_not_match() -> None:
    cookie = 0x9E3779B9
    dns = masscan_udp_probe(53, cookie, DNS_VERSION_BIND)
    bare = masscan_udp_probe(9999, cookie, b"")
    # On the wire the cookie is visible only where the payload has a field for it.
    ip_id = int.from_bytes(dns[14 + 4 : 14 + 6], "big")
    txid = int.from_bytes(dns[14 + 28 : 14 + 30], "big")
    assert ip_id ^ (DST & 0xFFFF) ^ 53 == txid
    assert len(bare) == 14 + 28
    # darkscope keeps headers only: neither probe matches Masscan (or anything else).
    b = decoded([dns, bare])
    assert b["protocol"].tolist() == [17, 17] and b["ttl"].tolist() == [255, 255]
    assert not packet_flags(b).any()
