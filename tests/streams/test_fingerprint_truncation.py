"""A fingerprint rule is not applicable to a packet whose capture lost a field it reads: the
field reads 0, and the rule never takes that 0 for a value (corsaro's "not applicable")."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from producers.decode import decode
from schemas.batch import PacketBatch
from streams.fingerprints import RULES, not_applicable, packet_rules
from tests.producers.pktbuild import ZMAP_OPTIONS, ether, frames_of, ip4, ipv4, tcp

ETH = 14
DST = "198.51.100.7"
# ZMap 4.1's SYN (window 65535, DF clear, TTL 64, its option bytes), with Mirai's seq == dst
ZMAP41_SYN = ether(ipv4(tcp(40000, 23, seq=ip4(DST), window=65535, options=ZMAP_OPTIONS), dst=DST, ttl=64))
OPTION_RULES = {"zmap_pre41", "zmap41", "nmap_syn"}


def _batch(caplens: list[int | None]) -> PacketBatch:
    return decode(frames_of([ZMAP41_SYN] * len(caplens), 1, caplens=caplens)).batch


def _matched(hits: npt.NDArray[np.uint16], name: str) -> list[bool]:
    bit = 1 << [r.name for r in RULES].index(name)
    return [bool(h & bit) for h in hits.tolist()]


def test_rules_reading_tcp_options_are_not_applicable_when_the_options_were_cut() -> None:
    b = _batch([None, ETH + 20 + 20 + 8])  # whole; cut after MSS, NOP, WS, NOP
    assert b["truncated"].tolist() == [0, 2]
    for rule in RULES:
        assert not_applicable(b, rule.name).tolist() == [False, rule.name in OPTION_RULES], rule.name
    hits = packet_rules(b)
    assert _matched(hits, "zmap41") == [True, False]
    assert _matched(hits, "mirai") == [True, True]  # seq and flags were captured: still judged


def test_every_rule_is_not_applicable_when_the_tcp_header_was_cut() -> None:
    b = _batch([ETH + 20 + 12])  # seq captured, flags and window not
    assert b["truncated"].tolist() == [3]
    assert all(not_applicable(b, rule.name).tolist() == [True] for rule in RULES)
    assert packet_rules(b).tolist() == [0]


def test_whole_packets_are_judged_as_before() -> None:
    b = _batch([None, None])
    assert not any(not_applicable(b, rule.name).any() for rule in RULES)
    assert _matched(packet_rules(b), "zmap41") == [True, True]
