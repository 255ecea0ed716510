"""Benchmark: how often each fingerprint rule matches traffic that is not its tool.

Negative controls: the shared captures (../shared/captures, or DARKSCOPE_SHARED_DIR) and the
simulator's background (its noise_tcp / noise_udp / noise_icmp and backscatter rows). For each
rule and control it prints the packets, the rule's matches and the matches of the rule's shape
alone (the template's fixed fields without its key: IP id 54321, the Masscan cookie, seq ==
dst), and the evidence that follows: -log2 of the match rate, by the rule of three (3 / packets)
where nothing matched. Known positives are told apart: the 8 ZMap probes of the RRSIG capture
(its README) and, in synscan.pcapng, the Nmap scan itself; backscatter and ping are classes of
traffic, not tools, so their matches are counted, not judged ("class").

The simulator removes chance key matches from its background on purpose
(producers/sim/packets.py separate_fingerprints), so for keyed rules only its shape column is
a measurement. Prints figures, never asserts.

    .venv/bin/python bench/fingerprint_rates.py [--sim-packets 200000] [--seed 0]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from producers.capture import open_capture
from producers.sim.model import KINDS
from producers.sim.simulate import simulate_quarter
from schemas.batch import PacketBatch
from streams.fingerprints import CONFIRM_AT_ONCE_BITS, RULES, ZMAP41_OPTION_KINDS, Rule

CAPTURES = ("amp.dns.RRSIG.fragmented.pcap", "amp.TCP.reflection.SYNACK.pcap", "synscan.pcapng")
# Rules whose tool is in the capture (positives, not false matches).
POSITIVE = {"synscan.pcapng": {"nmap_syn", "backscatter"}, "amp.TCP.reflection.SYNACK.pcap": {"backscatter"}}
BACKGROUND = {"noise_tcp", "noise_udp", "noise_icmp", "bs_tcp", "bs_icmp"}


def captures_dir() -> Path:
    """$DARKSCOPE_SHARED_DIR(/captures), else ../shared/captures beside the repository."""
    import os

    env = os.environ.get("DARKSCOPE_SHARED_DIR")
    if env:
        given = Path(env)
        return given if given.name == "captures" else given / "captures"
    return Path(__file__).resolve().parents[2] / "shared" / "captures"


def read(path: Path) -> PacketBatch:
    with open_capture(path) as cap:
        return PacketBatch.concat(list(cap), cap.sensor_id, 0)


def known_zmap(b: PacketBatch) -> np.ndarray:
    """The RRSIG capture's 8 ZMap probes (its README): id 54321, window 65535, DF clear, no
    options, SYN alone; taken out so that what is left is background."""
    return np.asarray(
        (b["protocol"] == 6)
        & (b["tcp_flags"] == 2)
        & (b["ip_id"] == 54321)
        & (b["tcp_window"] == 65535)
        & ((b["ip_flags"] & 2) == 0)
        & (b["tcp_opt_len"] == 0)
    )


def zmap41_near_misses(b: PacketBatch) -> int:
    """SYNs with ZMap 4.1's shape but any MSS value (the figure its shape_bits rest on)."""
    return int(
        np.count_nonzero(
            (b["protocol"] == 6)
            & (b["tcp_flags"] == 2)
            & (b["tcp_window"] == 65535)
            & ((b["ip_flags"] & 2) == 0)
            & (b["tcp_opt_len"] == 12)
            & (b["tcp_opt_kinds"] == ZMAP41_OPTION_KINDS)
            & (b["tcp_wscale"] == 8)
            & (b["ttl"] <= 64)
        )
    )


def simulated_background(packets: int, seed: int) -> PacketBatch:
    """One simulated day's background rows (noise and backscatter)."""
    sim = simulate_quarter("2022Q2", packets_per_day=packets, days=1, seed=seed)
    day = sim.generate_day(0)
    keep = np.isin(day.kind, [KINDS.index(k) for k in BACKGROUND])
    return PacketBatch.take(PacketBatch(sim.sensor_id, 0, day.columns), np.flatnonzero(keep))


def bits(matches: int, packets: int) -> str:
    if packets == 0:
        return "-"
    rate = max(matches, 3) / packets
    return f"{'>=' if matches < 3 else ''}{-math.log2(rate):.1f}"


def row(rule: Rule, name: str, b: PacketBatch, positive: bool) -> str:
    n = len(b)
    hit, shape = int(np.count_nonzero(rule(b))), int(np.count_nonzero(rule.shape(b)))
    label = "class" if rule.bits is None else "positive" if positive else "false"
    return (
        f"{rule.name:<15} {name:<44} {n:>9,} {hit:>8,} {label:<8} {hit / n if n else 0:>10.2e} "
        f"{shape:>7,} {bits(shape, n):>7}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sim-packets", type=int, default=200_000, help="packets of the simulated day")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    controls: list[tuple[str, PacketBatch, set[str]]] = []
    folder = captures_dir()
    for name in CAPTURES:
        path = folder / name
        if not path.is_file():
            print(f"{name}: not found in {folder}, skipped")
            continue
        b = read(path)
        label = name
        if name.startswith("amp.dns"):
            z = known_zmap(b)
            print(f"{name}: {len(b):,} packets, {int(z.sum())} known ZMap probes set aside")
            b = b.take(np.flatnonzero(~z))
            label = f"{name} (background)"
        controls.append((label, b, POSITIVE.get(name, set())))
    controls.append(
        ("simulated background (1 day)", simulated_background(args.sim_packets, args.seed), set())
    )

    print(f"confirm at once from {CONFIRM_AT_ONCE_BITS:.0f} bits of evidence\n")
    print("rule            stated: key + shape bits = evidence, confirm")
    for r in RULES:
        stated = "class of traffic" if r.bits is None else f"{r.key_bits} + {r.shape_bits:.1f} = {r.bits:.1f}"
        print(f"{r.name:<15} {stated:<24} confirm after {r.confirm}")
    print()
    head = ("rule", "control", "packets", "matches", "kind", "rate", "shape", "bits")
    print("{:<15} {:<44} {:>9} {:>8} {:<8} {:>10} {:>7} {:>7}".format(*head))
    for r in RULES:
        for name, b, positives in controls:
            print(row(r, name, b, r.name in positives))
    print()
    for r in RULES:
        if r.bits is None:
            continue
        negatives = [b for name, b, positives in controls if r.name not in positives]
        n, hit = sum(len(b) for b in negatives), sum(int(np.count_nonzero(r(b))) for b in negatives)
        print(f"{r.name:<15} false matches on the negative controls: {hit} of {n:,} packets")
    for name, b, _ in controls:
        print(f"zmap41 near misses (its shape, any MSS) in {name}: {zmap41_near_misses(b)} of {len(b):,}")


if __name__ == "__main__":
    main()
