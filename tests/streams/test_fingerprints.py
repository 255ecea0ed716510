"""Fingerprint predicates on byte-exact header fields, and per-source confirmation."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from core.settings import KafkaSettings, WorkerSettings
from schemas.batch import PacketBatch
from schemas.fingerprints import Fingerprint
from streams.fingerprints import (
    CONFIRM_AT_ONCE_BITS,
    RULES,
    SEVERAL,
    ZMAP41_OPTION_KINDS,
    SourceVerdicts,
    backscatter,
    icmp_echo_scan,
    masscan,
    mirai,
    nmap_syn,
    packet_flags,
    packet_rules,
    zmap,
)
from streams.state import WorkerState

DST = 0xC6336407  # 198.51.100.7
MSS_ONLY = 0x02 << 56  # option kinds: the MSS alone


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
    assert zmap(one(ip_id=54321, tcp_window=65535, tcp_opt_len=4, tcp_opt_kinds=MSS_ONLY, tcp_mss=1460))[0]
    assert not zmap(one(ip_id=54321, tcp_window=1024))[0]
    assert not zmap(one(ip_id=54321, tcp_window=65535, ip_flags=2))[0]  # DF set
    # MSS 536 / 1424: seen in the shared RRSIG capture, never written by stock ZMap.
    for mss in (536, 1424):
        assert not zmap(
            one(ip_id=54321, tcp_window=65535, tcp_opt_len=4, tcp_opt_kinds=MSS_ONLY, tcp_mss=mss)
        )[0]


def test_ip_id_54321_alone_is_no_fingerprint() -> None:
    # The Nmap probe of the shared SYN scan that carries 54321 by chance: window 1024, MSS 1460.
    nmap_probe = one(
        ip_id=54321, tcp_window=1024, ttl=48, tcp_opt_len=4, tcp_opt_kinds=MSS_ONLY, tcp_mss=1460
    )
    assert packet_flags(nmap_probe)[0] == Fingerprint.NMAP_SYN
    assert not packet_flags(one(ip_id=54321))[0]  # an ordinary SYN with the id by chance


def test_a_syn_with_any_other_flag_matches_no_scanner() -> None:
    for extra in (0x01, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xC0):  # FIN RST PSH ACK URG ECE CWR
        b = one(tcp_flags=0x02 | extra, ip_id=54321, tcp_window=65535)
        assert not zmap(b)[0] and not mirai(one(tcp_flags=0x02 | extra, tcp_seq=DST))[0], extra


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
    assert not zmap(one(**{**fields, "ip_flags": 2}))[0]  # ZMap's ip_off = 0: DF clear


def test_masscan_ip_id_is_dst_xor_dport_xor_seq_with_its_ttl_and_window() -> None:
    seq, dport = 0xDEADBEEF, 445
    ip_id = (DST ^ dport ^ seq) & 0xFFFF
    probe = {"tcp_seq": seq, "dport": dport, "ip_id": ip_id, "ttl": 250}
    assert masscan(one(**probe, tcp_window=1024))[0]  # before 4f89257: no options
    assert masscan(one(**probe, tcp_window=1025, tcp_opt_len=4, tcp_opt_kinds=MSS_ONLY, tcp_mss=1460))[0]
    assert not masscan(one(**probe, tcp_window=29200))[0]  # the window is fixed in the template
    assert not masscan(one(**{**probe, "ip_id": ip_id ^ 1}, tcp_window=1024))[0]
    assert not masscan(one(**{**probe, "ttl": 60}, tcp_window=1024))[0]  # TTL 64 source


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
    assert nmap_syn(one(tcp_window=1024, tcp_opt_len=4, tcp_opt_kinds=MSS_ONLY, tcp_mss=1460))[0]
    assert nmap_syn(one(tcp_window=3072, ttl=42, tcp_opt_len=4, tcp_opt_kinds=MSS_ONLY, tcp_mss=1460))[0]
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


def test_every_rule_states_its_evidence_and_strong_ones_confirm_at_once() -> None:
    confirm = {r.name: r.confirm for r in RULES}
    assert confirm == {
        "mirai": 1,  # 32-bit key
        "zmap_pre41": 1,  # 16-bit key and the whole template
        "zmap41": SEVERAL,  # a shape, no key: ZMap randomised its IP id to stop fingerprinting
        "masscan": 1,  # 16-bit cookie, TTL and window
        "backscatter": 1,
        "nmap_syn": SEVERAL,
        "icmp_echo_scan": 1,
    }
    for r in RULES:
        bits = r.bits
        assert (bits is None or bits >= CONFIRM_AT_ONCE_BITS) == (r.confirm == 1), r.name
        assert bits is None or bits >= r.key_bits, r.name


def _zmap41_batch(src: int, n: int, match: bool) -> PacketBatch:
    """ZMap >= 4.1 probes from ``src`` (a weak rule), or the same SYNs with a Windows window."""
    b = PacketBatch.zeros("s", 0, n)
    c = b.columns
    c["ip_version"][:], c["protocol"][:], c["tcp_flags"][:] = 4, 6, 2
    c["src"][:] = src
    c["dst"][:] = DST + np.arange(n, dtype=np.uint32)
    c["tcp_opt_len"][:], c["tcp_opt_kinds"][:] = 12, ZMAP41_OPTION_KINDS
    c["tcp_mss"][:], c["tcp_wscale"][:], c["ttl"][:] = 1460, 8, 55
    c["tcp_window"][:] = 65535 if match else 64240
    return b


def update(v: SourceVerdicts, b: PacketBatch) -> np.ndarray:
    return v.update(b, packet_rules(b))


def test_one_full_template_probe_confirms_its_source() -> None:
    verdicts = SourceVerdicts()
    b = _masscan_batch(0x0A000001, 1, match=True)
    assert update(verdicts, b)[0] & Fingerprint.MASSCAN
    old_zmap = one(src=0x0A000002, ip_id=54321, tcp_window=65535)
    assert update(verdicts, old_zmap)[0] & Fingerprint.ZMAP
    assert verdicts.confirmed(Fingerprint.MASSCAN) == {0x0A000001}
    assert verdicts.confirmed(Fingerprint.ZMAP) == {0x0A000002}


def test_source_confirmed_by_a_weak_rule_only_after_several_matches() -> None:
    verdicts = SourceVerdicts()
    first = _zmap41_batch(0x0A000001, SEVERAL - 1, match=True)
    assert not update(verdicts, first).any()
    second = _zmap41_batch(0x0A000001, 5, match=True)
    assert (update(verdicts, second) & Fingerprint.ZMAP).all()
    assert verdicts.confirmed(Fingerprint.ZMAP) == {0x0A000001}


def test_a_weak_rule_matching_now_and_then_never_confirms() -> None:
    verdicts = SourceVerdicts(min_ratio=0.5)
    noisy = _zmap41_batch(0x0B000001, 1000, match=False)
    lucky = _zmap41_batch(0x0B000001, 1, match=True)
    for b in (noisy, lucky, noisy, lucky, noisy, lucky, noisy):  # 3 matches in 4003
        update(verdicts, b)
    assert verdicts.confirmed(Fingerprint.ZMAP) == set()


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
    c["tcp_window"][:] = 1024
    ids = (c["dst"] ^ c["dport"].astype(np.uint32) ^ c["tcp_seq"]) & 0xFFFF
    c["ip_id"][:] = ids if match else ids ^ 1
    return b


def test_mirai_source_confirmed_on_first_match() -> None:
    verdicts = SourceVerdicts()
    assert update(verdicts, one(tcp_seq=DST))[0] & Fingerprint.MIRAI


def test_verdicts_forget_the_least_recently_seen_sources_beyond_capacity() -> None:
    verdicts = SourceVerdicts(capacity=2)
    for src in (0x0A000001, 0x0A000002, 0x0A000001, 0x0A000003):  # .2 is the least recent
        update(verdicts, one(src=src, tcp_seq=DST))
    assert len(verdicts) == 2
    assert verdicts.confirmed(Fingerprint.MIRAI) == {0x0A000001, 0x0A000003}
    assert update(verdicts, one(src=0x0A000003, tcp_seq=DST))[0] & Fingerprint.MIRAI


@given(st.lists(st.tuples(st.integers(0, 7), st.booleans()), min_size=1, max_size=120))
@settings(max_examples=80, deadline=None)
def test_verdicts_equal_a_per_source_reference_over_batches(stream: list[tuple[int, bool]]) -> None:
    """A weak rule's confirmation, fed in batches of 5, equals the rule applied source by source."""
    verdicts = SourceVerdicts(min_ratio=0.5)
    seen: dict[int, list[int]] = {}  # source -> [packets since first match, matches]
    confirmed: set[int] = set()  # confirmation is sticky
    for start in range(0, len(stream), 5):
        chunk = stream[start : start + 5]
        b = PacketBatch.concat([_zmap41_batch(0x0C000000 + s, 1, match=m) for s, m in chunk], "s", start)
        got = update(verdicts, b)
        for s, m in chunk:
            if m or s in seen:
                counts = seen.setdefault(s, [0, 0])
                counts[0] += 1
                counts[1] += int(m)
        confirmed |= {0x0C000000 + s for s, (n, k) in seen.items() if k >= SEVERAL and k >= 0.5 * n}
        assert verdicts.confirmed(Fingerprint.ZMAP) == confirmed
        flagged = {int(x) for x in b["src"][(got & Fingerprint.ZMAP) != 0].tolist()}
        assert flagged == {int(x) for x in b["src"].tolist()} & confirmed


def test_the_worker_keeps_the_fingerprint_sources_its_settings_say() -> None:
    state = WorkerState(WorkerSettings(fingerprint_sources=5000), KafkaSettings())
    enricher = state.get_enricher()
    try:
        assert enricher.verdicts.capacity == 5000
    finally:
        enricher.geo.close()


def test_a_sources_counters_saturate_rather_than_wrap() -> None:
    """Counters are 32-bit: one that would pass 2^32 - 1 stays there (wrapped to 0, three
    matches among "0 packets" would confirm a source that matched 3 times in 4 billion)."""
    verdicts = SourceVerdicts(min_ratio=0.5)
    update(verdicts, _zmap41_batch(0x0D000001, 1, match=True))
    verdicts._counts[0, 0] = np.iinfo(np.uint32).max - 1  # its packets since the first match
    update(verdicts, _zmap41_batch(0x0D000001, 2, match=True))
    assert int(verdicts._counts[0, 0]) == np.iinfo(np.uint32).max
    assert verdicts.confirmed(Fingerprint.ZMAP) == set()


def test_verdicts_grow_to_the_capacity_and_keep_the_most_recent_sources() -> None:
    verdicts = SourceVerdicts(capacity=1500)
    batches = [
        PacketBatch.concat([one(src=0x0E000000 + 1000 * i + k, tcp_seq=DST) for k in range(1000)], "s", i)
        for i in range(4)
    ]
    for b in batches:
        assert (update(verdicts, b) & Fingerprint.MIRAI).all()
    # No doubling past the capacity: at most the capacity and one batch of new sources.
    assert len(verdicts) == 1500 and len(verdicts._keys) <= 1500 + 1000
    newest = {int(x) for x in batches[-1]["src"].tolist()}
    assert newest <= verdicts.confirmed(Fingerprint.MIRAI)
    assert update(verdicts, batches[-1])[0] & Fingerprint.MIRAI
