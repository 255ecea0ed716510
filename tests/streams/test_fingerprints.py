"""Fingerprint predicates on byte-exact header fields, and per-source confirmation."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.batch import PacketBatch
from schemas.fingerprints import Fingerprint
from streams.fingerprints import (
    ZMAP41_OPTION_KINDS,
    SourceVerdicts,
    backscatter,
    icmp_echo_scan,
    masscan,
    mirai,
    nmap_syn,
    packet_flags,
    zmap,
)

DST = 0xC6336407  # 198.51.100.7


def one(**fields: int) -> PacketBatch:
    """A one-packet IPv4 batch: TCP SYN to DST unless fields say otherwise."""
    b = PacketBatch.zeros("s", 0, 1)
    base = {
        "ip_version": 4,
        "src": 0x01020304,
        "dst": DST,
        "protocol": 6,
        "tcp_flags": 0x02,
        "tcp_seq": 12345,
        "tcp_window": 29200,
        "ttl": 50,
        "ip_id": 777,
        "dport": 80,
        "sport": 40000,
    }
    base.update(fields)
    for name, value in base.items():
        b.columns[name][0] = value
    return b


def test_mirai_flag_set_when_seq_equals_destination() -> None:
    assert mirai(one(tcp_seq=DST, dport=23))[0]
    assert packet_flags(one(tcp_seq=DST))[0] & Fingerprint.MIRAI


def test_mirai_flag_clear_when_seq_differs_or_not_a_bare_syn() -> None:
    assert not mirai(one(tcp_seq=DST + 1))[0]
    assert not mirai(one(tcp_seq=DST, tcp_flags=0x12))[0]  # SYN-ACK
    assert not mirai(one(tcp_seq=DST, protocol=17))[0]


def test_old_zmap_matches_ip_id_54321_with_window_65535() -> None:
    assert zmap(one(ip_id=54321, tcp_window=65535))[0]
    assert zmap(one(ip_id=54321, tcp_window=65535, tcp_opt_len=4, tcp_mss=1460))[0]
    assert not zmap(one(ip_id=54321, tcp_window=1024))[0]
    assert not zmap(one(ip_id=54321, tcp_window=65535, ip_flags=2))[0]  # DF set


def test_zmap_41_matches_its_fixed_option_bytes_and_ttl_64() -> None:
    fields = {
        "tcp_window": 65535,
        "tcp_opt_len": 12,
        "tcp_opt_kinds": ZMAP41_OPTION_KINDS,
        "tcp_mss": 1460,
        "tcp_wscale": 8,
        "ttl": 57,
        "ip_id": 4242,
    }
    assert zmap(one(**fields))[0]
    # Windows sends the same option layout, but with TTL 128 and another window.
    assert not zmap(one(**{**fields, "ttl": 120}))[0]
    assert not zmap(one(**{**fields, "tcp_window": 64240}))[0]


def test_masscan_ip_id_is_dst_xor_dport_xor_seq() -> None:
    seq, dport = 0xDEADBEEF, 445
    ip_id = (DST ^ dport ^ seq) & 0xFFFF
    assert masscan(one(tcp_seq=seq, dport=dport, ip_id=ip_id, ttl=250, tcp_window=1024))[0]
    assert not masscan(one(tcp_seq=seq, dport=dport, ip_id=ip_id ^ 1, ttl=250))[0]
    assert not masscan(one(tcp_seq=seq, dport=dport, ip_id=ip_id, ttl=60))[0]  # TTL 64 source


def test_backscatter_is_synack_rst_and_icmp_replies() -> None:
    assert backscatter(one(tcp_flags=0x12))[0]
    assert backscatter(one(tcp_flags=0x04))[0]
    assert backscatter(one(tcp_flags=0x14))[0]
    assert not backscatter(one(tcp_flags=0x02))[0]
    for icmp_type in (0, 3, 4, 5, 11, 12, 14, 16, 18):
        assert backscatter(one(protocol=1, tcp_flags=0, icmp_type=icmp_type))[0], icmp_type
    for icmp_type in (8, 13, 15, 17):
        assert not backscatter(one(protocol=1, tcp_flags=0, icmp_type=icmp_type))[0], icmp_type


def test_nmap_syn_window_1024_with_mss_1460_only() -> None:
    assert nmap_syn(one(tcp_window=1024, tcp_opt_len=4, tcp_mss=1460))[0]
    assert nmap_syn(one(tcp_window=3072, ttl=42, tcp_opt_len=4, tcp_mss=1460))[0]  # 1024*(42%4+1)
    assert not nmap_syn(one(tcp_window=1024))[0]  # no MSS: that is masscan's shape


def test_icmp_echo_request_is_an_echo_scan() -> None:
    assert icmp_echo_scan(one(protocol=1, tcp_flags=0, icmp_type=8))[0]
    assert not icmp_echo_scan(one(protocol=1, tcp_flags=0, icmp_type=0))[0]


def test_ordinary_syns_match_nothing() -> None:
    rng = np.random.default_rng(5)
    n = 100_000
    b = PacketBatch.zeros("s", 0, n)
    c = b.columns
    c["ip_version"][:] = 4
    c["protocol"][:] = 6
    c["tcp_flags"][:] = 2
    c["src"][:] = rng.integers(0, 2**32, n, dtype=np.uint32)
    c["dst"][:] = rng.integers(0, 2**32, n, dtype=np.uint32)
    c["tcp_seq"][:] = rng.integers(0, 2**32, n, dtype=np.uint32)
    c["dport"][:] = rng.integers(0, 65536, n, dtype=np.uint16)
    c["ip_id"][:] = rng.integers(0, 65536, n, dtype=np.uint16)
    c["tcp_window"][:] = 29200
    c["ttl"][:] = 52
    assert int(np.count_nonzero(packet_flags(b))) == 0


def _masscan_batch(src: int, n: int, match: bool) -> PacketBatch:
    b = PacketBatch.zeros("s", 0, n)
    c = b.columns
    c["ip_version"][:] = 4
    c["protocol"][:] = 6
    c["tcp_flags"][:] = 2
    c["src"][:] = src
    c["dst"][:] = DST + np.arange(n, dtype=np.uint32)
    c["dport"][:] = 445
    c["tcp_seq"][:] = np.arange(n, dtype=np.uint32) * 7919
    c["ttl"][:] = 249
    ids = (c["dst"] ^ c["dport"].astype(np.uint32) ^ c["tcp_seq"]) & 0xFFFF
    c["ip_id"][:] = ids if match else ids ^ 1
    return b


def test_source_confirmed_as_masscan_only_after_several_matches() -> None:
    verdicts = SourceVerdicts(min_matches=3)
    first = _masscan_batch(0x0A000001, 2, match=True)
    assert not verdicts.update(first, packet_flags(first)).any()
    second = _masscan_batch(0x0A000001, 5, match=True)
    v = verdicts.update(second, packet_flags(second))
    assert (v & Fingerprint.MASSCAN).all()
    assert verdicts.confirmed(Fingerprint.MASSCAN) == {0x0A000001}


def test_one_chance_match_among_many_packets_never_confirms() -> None:
    verdicts = SourceVerdicts(min_matches=3, min_ratio=0.5)
    noisy = _masscan_batch(0x0B000001, 1000, match=False)
    lucky = _masscan_batch(0x0B000001, 1, match=True)
    for b in (noisy, lucky, noisy, lucky, noisy, lucky, noisy):  # 3 chance matches in 4003
        verdicts.update(b, packet_flags(b))
    assert verdicts.confirmed(Fingerprint.MASSCAN) == set()


def test_mirai_source_confirmed_on_first_match() -> None:
    verdicts = SourceVerdicts()
    b = one(tcp_seq=DST)
    assert verdicts.update(b, packet_flags(b))[0] & Fingerprint.MIRAI


def test_verdicts_forget_the_least_recently_seen_sources_beyond_capacity() -> None:
    verdicts = SourceVerdicts(capacity=2)
    for src in (0x0A000001, 0x0A000002, 0x0A000001, 0x0A000003):  # .2 is the least recent
        b = one(src=src, tcp_seq=DST)
        verdicts.update(b, packet_flags(b))
    assert len(verdicts) == 2
    assert verdicts.confirmed(Fingerprint.MIRAI) == {0x0A000001, 0x0A000003}
    again = one(src=0x0A000003, tcp_seq=DST)
    assert verdicts.update(again, packet_flags(again))[0] & Fingerprint.MIRAI


@given(st.lists(st.tuples(st.integers(0, 7), st.booleans()), min_size=1, max_size=120))
@settings(max_examples=80, deadline=None)
def test_verdicts_equal_a_per_source_reference_over_batches(stream: list[tuple[int, bool]]) -> None:
    """Masscan confirmation, fed in batches of 5, equals the rule applied source by source."""
    verdicts = SourceVerdicts(min_matches=3, min_ratio=0.5)
    seen: dict[int, list[int]] = {}  # source -> [packets since first match, matches]
    confirmed: set[int] = set()  # confirmation is sticky
    for start in range(0, len(stream), 5):
        chunk = stream[start : start + 5]
        b = PacketBatch.concat([_masscan_batch(0x0C000000 + s, 1, match=m) for s, m in chunk], "s", start)
        got = verdicts.update(b, packet_flags(b))
        for s, m in chunk:
            if m or s in seen:
                counts = seen.setdefault(s, [0, 0])
                counts[0] += 1
                counts[1] += int(m)
        confirmed |= {0x0C000000 + s for s, (n, k) in seen.items() if k >= 3 and k >= 0.5 * n}
        assert verdicts.confirmed(Fingerprint.MASSCAN) == confirmed
        flagged = {int(x) for x in b["src"][(got & Fingerprint.MASSCAN) != 0].tolist()}
        assert flagged == {int(x) for x in b["src"].tolist()} & confirmed
