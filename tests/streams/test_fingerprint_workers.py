"""Per-source verdicts when one source's packets are judged by several workers.

Today the sensor publishes packet batches unkeyed (producers/sensor.py), so whole batches are
spread over the packets partitions without regard to their sources, and every worker's enrich
agent folds the batches of its partitions into its own SourceVerdicts (streams/state.py). These
tests split a stream of batches over several SourceVerdicts instances in that way, and in the
way a routing by source would (each batch cut by streams.combiner.shard_of of its sources, the
hash the counts partitions already use), and compare with one instance that sees everything.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.batch import PacketBatch
from schemas.fingerprints import Fingerprint
from streams.combiner import shard_of
from streams.fingerprints import ZMAP41_OPTION_KINDS, SourceVerdicts, packet_rules, source_keys

DST = 0xC6336407
SRC0 = 0x0A000000
STRONG = ("mirai", "masscan", "old_zmap", "ordinary")
ALL = (*STRONG, "zmap41", "windows")  # zmap41 is a weak rule; windows is its near miss


def packet(src: int, kind: str, i: int) -> PacketBatch:
    """One SYN from ``SRC0 + src`` of the given kind (the i-th of the stream)."""
    b = PacketBatch.zeros("s", 0, 1)
    c = b.columns
    c["ip_version"][0], c["protocol"][0], c["tcp_flags"][0] = 4, 6, 0x02
    c["src"][0], c["dst"][0], c["dport"][0] = SRC0 + src, DST + i, 80
    c["tcp_seq"][0], c["ttl"][0], c["tcp_window"][0], c["ip_id"][0] = 1000 + i, 50, 29200, 7
    if kind == "mirai":
        c["tcp_seq"][0] = c["dst"][0]
    elif kind == "masscan":
        c["ttl"][0], c["tcp_window"][0] = 240, 1024
        c["ip_id"][0] = (int(c["dst"][0]) ^ 80 ^ int(c["tcp_seq"][0])) & 0xFFFF
    elif kind == "old_zmap":
        c["ip_id"][0], c["tcp_window"][0] = 54321, 65535
    elif kind in ("zmap41", "windows"):
        c["tcp_opt_len"][0], c["tcp_opt_kinds"][0] = 12, ZMAP41_OPTION_KINDS
        c["tcp_mss"][0], c["tcp_wscale"][0] = 1460, 8
        c["tcp_window"][0] = 65535 if kind == "zmap41" else 64240
    return b


def batches_of(stream: list[tuple[int, str]], size: int) -> list[PacketBatch]:
    packets = [packet(s, kind, i) for i, (s, kind) in enumerate(stream)]
    return [PacketBatch.concat(packets[i : i + size], "s", i) for i in range(0, len(packets), size)]


def one_worker(batches: list[PacketBatch]) -> tuple[SourceVerdicts, list[np.ndarray]]:
    v = SourceVerdicts()
    return v, [v.update(b, packet_rules(b)) for b in batches]


def confirmed(workers: list[SourceVerdicts], bit: Fingerprint) -> set[int]:
    return set().union(*(w.confirmed(bit) for w in workers))


BITS = (Fingerprint.MIRAI, Fingerprint.MASSCAN, Fingerprint.ZMAP)
streams = st.lists(st.tuples(st.integers(0, 5), st.sampled_from(STRONG)), min_size=1, max_size=80)


@given(streams, st.integers(1, 7), st.integers(2, 4), st.data())
@settings(max_examples=60, deadline=None)
def test_strong_rules_confirm_the_same_sources_however_whole_batches_are_spread(
    stream: list[tuple[int, str]], size: int, workers: int, data: st.DataObject
) -> None:
    batches = batches_of(stream, size)
    single, _ = one_worker(batches)
    spread = [SourceVerdicts() for _ in range(workers)]
    flagged: dict[Fingerprint, set[int]] = {bit: set() for bit in BITS}
    for b in batches:  # unkeyed: any batch may land on any partition, hence any worker
        w = spread[data.draw(st.integers(0, workers - 1))]
        v = w.update(b, packet_rules(b))
        for bit in BITS:
            flagged[bit] |= set(b["src"][(v & bit) != 0].tolist())
    for bit in BITS:
        assert confirmed(spread, bit) == single.confirmed(bit), bit
        # What the report counts as a tool's sources (any packet with the verdict) agrees too.
        assert flagged[bit] == single.confirmed(bit), bit


def test_a_weak_rule_split_over_workers_by_batch_loses_its_confirmation() -> None:
    # Four ZMap >= 4.1 probes, one batch each, alternating between two workers.
    batches = batches_of([(1, "zmap41")] * 4, 1)
    single, _ = one_worker(batches)
    assert single.confirmed(Fingerprint.ZMAP) == {SRC0 + 1}
    spread = [SourceVerdicts(), SourceVerdicts()]
    for i, b in enumerate(batches):
        spread[i % 2].update(b, packet_rules(b))
    assert confirmed(spread, Fingerprint.ZMAP) == set()  # 2 + 2 matches: never SEVERAL anywhere


@given(
    st.lists(st.tuples(st.integers(0, 7), st.sampled_from(ALL)), min_size=1, max_size=120),
    st.integers(1, 9),
    st.integers(2, 4),
)
@settings(max_examples=60, deadline=None)
def test_routing_by_source_gives_every_packet_the_verdict_of_one_worker(
    stream: list[tuple[int, str]], size: int, workers: int
) -> None:
    batches = batches_of(stream, size)
    _, expected = one_worker(batches)
    spread = [SourceVerdicts() for _ in range(workers)]
    for b, want in zip(batches, expected, strict=True):
        shard = shard_of(source_keys(b), workers)
        for w in range(workers):
            rows = np.flatnonzero(shard == w)
            if len(rows):
                part = b.take(rows)
                assert np.array_equal(spread[w].update(part, packet_rules(part)), want[rows])
