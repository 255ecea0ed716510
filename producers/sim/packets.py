"""What each simulated sender puts in its headers: Mirai, ZMap, Masscan, Nmap, DoS backscatter
and background noise, vectorised over PacketBatch columns.

Header values follow the tools' own source, read at these commits (file:line cited below):
Mirai jgamblin/Mirai-Source-Code@4889a6f, ZMap zmap/zmap@8de8833 (and tags v2.1.1,
v4.0.0-RC1, v4.1.0), Masscan robertdavidgraham/masscan@2be4093, Nmap nmap/nmap@db4aefd.
``separate_fingerprints`` then makes the ground truth exact: every packet matches the
fingerprint of the tool that sent it and no other (see DESIGN.md decision 3).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from core.errors import DarkscopeError
from producers.sim.model import ICMP, TCP, UDP
from schemas.batch import column_dtypes

__all__ = [
    "Episode",
    "backscatter_day",
    "empty_columns",
    "fill_scan",
    "random_ports",
    "separate_fingerprints",
    "source_attributes",
]

Array = npt.NDArray[Any]
Columns = dict[str, Array]

SYN, RST, ACK = 0x02, 0x04, 0x10
DF = 2
ZMAP_OLD_IP_ID = 54321  # zmap packet.c:91 (make_ip_header), before v4.1
MSS_ONLY = 0x02 << 56  # option kinds packed from the most significant byte
# zmap >= v4.1 default "windows" options (module_tcp_synscan.c:47-52, packet.c:257-260):
# 020405b4 01030308 01010402 = MSS 1460, NOP, WS 8, NOP, NOP, SACK-permitted.
ZMAP41_KINDS = 0x0201030101040000
LINUX_KINDS = 0x0204080103000000  # MSS, SACK-permitted, timestamps, NOP, WS (a Linux SYN)
# Windows SYNs carry ZMap 4.1's exact option bytes; only the window (never 65535) tells them apart.
WINDOWS_KINDS = ZMAP41_KINDS
# Windows that fingerprints key on (ZMap 65535, Masscan 1024/1025, Nmap 1024*k): never noise.
SPECIAL_WINDOWS = (1024, 1025, 2048, 3072, 4096, 65535)
SERVICE_PORTS = np.array([80, 443, 22, 25, 53, 3389, 8080, 27015, 6667, 5060], dtype=np.uint16)


def empty_columns(n: int) -> Columns:
    """Zeroed PacketBatch columns for ``n`` IPv4 packets (window scale absent = 255)."""
    cols = {name: np.zeros(n, dtype=dt) for name, dt in column_dtypes().items()}
    cols["ip_version"][:] = 4
    cols["tcp_wscale"][:] = 255
    return cols


def random_ports(rng: np.random.Generator, n: int, avoid: frozenset[int]) -> Array:
    """Ports uniform in 1024-65535 that are never one of ``avoid``."""
    ports = rng.integers(1024, 65536, size=n, dtype=np.int64)
    bad = np.isin(ports, list(avoid))
    while bad.any():
        ports[bad] = rng.integers(1024, 65536, size=int(bad.sum()))
        bad = np.isin(ports, list(avoid))
    return ports.astype(np.uint16)


def _windows(rng: np.random.Generator, n: int) -> Array:
    window = rng.integers(1, 65536, size=n, dtype=np.int64)
    bad = np.isin(window, SPECIAL_WINDOWS)
    while bad.any():
        window[bad] = rng.integers(1, 65536, size=int(bad.sum()))
        bad = np.isin(window, SPECIAL_WINDOWS)
    return window.astype(np.uint16)


def source_attributes(kind: str, n: int, rng: np.random.Generator) -> dict[str, Array]:
    """Per-source constants of ``n`` senders of one kind: hops, source port, window, variant."""
    hops = rng.integers(5, 25, size=n).astype(np.uint8)  # received TTL = initial TTL - hops
    attrs: dict[str, Array] = {
        "hops": hops,
        "sport": np.zeros(n, np.uint16),
        "window": np.zeros(n, np.uint16),
        "variant": np.zeros(n, np.uint8),
    }
    if kind == "mirai":
        # scanner.c:99-103 source port = rand_next() & 0xffff until >= 1024, once per bot;
        # scanner.c:120 window = rand_next() & 0xffff, also once: both constant per bot.
        attrs["sport"] = rng.integers(1024, 65536, size=n).astype(np.uint16)
        attrs["window"] = _windows(rng, n)
    elif kind == "zmap":
        # 0: v2.x, no options (v2.1.1 module_tcp_synscan.c:40); 1: v3-v4.0, MSS 1460 only
        # (v4.0.0-RC1 module_tcp_synscan.c:49); 2: v4.1+, Windows-style options.
        attrs["variant"] = rng.choice(3, size=n, p=[0.25, 0.55, 0.20]).astype(np.uint8)
    elif kind == "masscan":
        # main.c:1316-1319: source port 40000 + now % 20000, then a range of 16 ports.
        attrs["sport"] = (40000 + rng.integers(0, 20000, size=n)).astype(np.uint16)
    elif kind == "nmap":
        # NmapOps.cc:259 magic_port = 33000 + random % 31000; scan_engine_raw.cc:1193-1196.
        attrs["sport"] = (33000 + rng.integers(0, 31000, size=n)).astype(np.uint16)
    elif kind == "noise_tcp":  # 0 Linux, 1 Windows, 2 small stacks (MSS only)
        attrs["variant"] = rng.choice(3, size=n, p=[0.55, 0.30, 0.15]).astype(np.uint8)
        table = np.array([[64240, 29200, 42340], [64240, 8192, 64240], [14600, 5840, 16384]])
        attrs["window"] = table[attrs["variant"], rng.integers(0, 3, size=n)].astype(np.uint16)
    elif kind in ("noise_udp", "noise_icmp", "bs_tcp", "bs_icmp"):  # 0: TTL 64, 1: 128, 2: 255
        attrs["variant"] = rng.choice(3, size=n, p=[0.6, 0.3, 0.1]).astype(np.uint8)
        attrs["sport"] = SERVICE_PORTS[rng.integers(0, len(SERVICE_PORTS), size=n)]
        attrs["window"] = np.array([64240, 29200, 8192], np.uint16)[rng.integers(0, 3, size=n)]
    return attrs


INITIAL_TTL = np.array([64, 128, 255], dtype=np.uint8)


def fill_scan(kind: str, rng: np.random.Generator, cols: Columns, src: dict[str, Array]) -> None:
    """Fill the header columns of probes whose ts, src, dst, protocol and dport are set.

    ``src`` holds the sender's constants (``source_attributes``) gathered per packet.
    """
    n = len(cols["ts"])
    hops = src["hops"]
    cols["ip_id"][:] = rng.integers(0, 65536, size=n)
    cols["tcp_seq"][:] = rng.integers(0, 1 << 32, size=n, dtype=np.uint64)
    if kind in ("mirai", "zmap", "masscan", "nmap", "noise_tcp"):
        cols["tcp_flags"][:] = SYN
        cols["length"][:] = 40
    if kind == "mirai":
        # scanner.c:109-121 (template) and 211-225 (per packet): IP id rand_next(), TTL 64,
        # no options (doff 5), SYN, frag_off 0 (buffer zeroed, scanner.c:31) so DF clear,
        # tcph->seq = iph->daddr (line 225), dport 2323 when i % 10 == 0 else 23.
        cols["tcp_seq"][:] = cols["dst"]
        cols["ttl"][:] = 64 - hops
        cols["sport"][:] = src["sport"]
        cols["tcp_window"][:] = src["window"]
    elif kind == "zmap":
        variant = src["variant"]
        # packet.c:108-119 window 65535, seq from validation; sport in 32768-61000 (state.c:69).
        cols["tcp_window"][:] = 65535
        cols["sport"][:] = rng.integers(32768, 61001, size=n)
        old = variant < 2
        cols["ip_id"][old] = ZMAP_OLD_IP_ID  # v4.1 takes ip_id from validation (send.c:419-420)
        # TTL: MAXTTL 255 before v4.1 (v4.0.0-RC1 state.c:41), IPDEFTTL 64 after (state.c:59).
        cols["ttl"][:] = np.where(old, 255, 64) - hops
        mss = variant == 1  # packet.c:121-144 set_mss_option: 02 04 05 b4
        cols["tcp_opt_len"][mss], cols["tcp_opt_kinds"][mss], cols["tcp_mss"][mss] = 4, MSS_ONLY, 1460
        new = variant == 2
        cols["tcp_opt_len"][new], cols["tcp_opt_kinds"][new] = 12, ZMAP41_KINDS
        cols["tcp_mss"][new], cols["tcp_wscale"][new] = 1460, 8
        cols["length"][:] = 40 + cols["tcp_opt_len"]
    elif kind == "masscan":
        # templ-pkt.c:30-54 template: TTL 255 (line 39), frag 0, SYN, window 1024 and no
        # options in 2022 builds (MSS 1460 / window 1025 only since 4f89257, Nov 2023).
        cols["ttl"][:] = 255 - hops
        cols["tcp_window"][:] = 1024
        cols["sport"][:] = src["sport"] + rng.integers(0, 16, size=n).astype(np.uint16)
        # templ-pkt.c:432: ip_id = ip_them ^ port_them ^ seqno (truncated to 16 bits).
        cols["ip_id"][:] = (cols["dst"] ^ cols["dport"].astype(np.uint32) ^ cols["tcp_seq"]) & 0xFFFF
    elif kind == "nmap":
        # tcpip.cc:607 window 1024; nmap.h:163 + scan_engine_raw.cc:1213 MSS 1460 only;
        # tcpip.cc:533 TTL (random % 23) + 37 when not set; DF clear by default.
        cols["ttl"][:] = rng.integers(37, 60, size=n).astype(np.uint8) - np.minimum(hops, 30)
        cols["sport"][:] = src["sport"]
        cols["tcp_window"][:] = 1024
        cols["tcp_opt_len"][:], cols["tcp_opt_kinds"][:], cols["tcp_mss"][:] = 4, MSS_ONLY, 1460
        cols["length"][:] = 44
    elif kind == "noise_tcp":
        _fill_noise_tcp(rng, cols, src)
    elif kind == "noise_udp":
        cols["ttl"][:] = INITIAL_TTL[src["variant"]] - hops
        cols["sport"][:] = rng.integers(1024, 65536, size=n)
        cols["length"][:] = 28 + rng.integers(17, 64, size=n)
        cols["tcp_seq"][:] = 0
    elif kind == "noise_icmp":  # echo requests (type 8): ping sweeps; never backscatter types
        cols["ttl"][:] = INITIAL_TTL[src["variant"]] - hops
        cols["icmp_type"][:] = 8
        cols["length"][:] = np.array([84, 60, 28], np.uint16)[src["variant"]]
        cols["tcp_seq"][:] = 0


def _fill_noise_tcp(rng: np.random.Generator, cols: Columns, src: dict[str, Array]) -> None:
    """Ordinary SYNs from OS stacks: DF set, OS windows and options, ephemeral source ports."""
    n, variant = len(cols["ts"]), src["variant"]
    cols["tcp_window"][:] = src["window"]
    cols["ip_flags"][:] = DF
    cols["ttl"][:] = np.where(variant == 1, 128, 64) - src["hops"]
    cols["sport"][:] = np.where(
        variant == 1, rng.integers(49152, 65536, size=n), rng.integers(32768, 61000, size=n)
    )
    opt = np.array([20, 12, 4], np.uint8)[variant]
    cols["tcp_opt_len"][:] = opt
    cols["tcp_opt_kinds"][:] = np.array([LINUX_KINDS, WINDOWS_KINDS, MSS_ONLY], np.uint64)[variant]
    cols["tcp_mss"][:] = 1460
    cols["tcp_wscale"][:] = np.array([7, 8, 255], np.uint8)[variant]
    cols["length"][:] = 40 + opt


@dataclass(frozen=True)
class Episode:
    """One DoS backscatter episode: a victim answering spoofed packets at a darknet."""

    victim: int
    reporter: int  # source of the packets: the victim, or a router for ICMP errors
    region: str
    protocol: str  # 'tcp' or 'icmp'
    response: str  # syn-ack, rst, rst-ack, echo-reply, unreachable, time-exceeded
    service_port: int
    start_ns: int
    end_ns: int
    packets: int


MIN_EPISODE = 40  # corsaro: >= 25 packets, >= 60 s, >= 30 packets/minute per victim
DAY_NS = 86_400 * 10**9
EDGE_NS = 600 * 10**9  # episodes stay 10 min off midnight, so days never join two episodes


EPISODE_SIGMA = 0.6
EPISODE_MEAN = MIN_EPISODE + 40.0 * float(np.exp(EPISODE_SIGMA**2 / 2))  # ~88 packets


def _episode_sizes(rng: np.random.Generator, n: int, most: int) -> Array:
    """Sizes of the episodes that carry about ``n`` packets: Poisson(n / mean) of them.

    Drawing episodes rather than splitting ``n`` keeps the expected volume equal to the plan's
    even when a region expects a fraction of one episode a day.
    """
    k = min(int(rng.poisson(n / EPISODE_MEAN)), most)
    sizes = MIN_EPISODE + np.rint(rng.lognormal(np.log(40.0), EPISODE_SIGMA, size=k))
    out: Array = np.minimum(sizes, 5000).astype(np.int64)
    return out


def backscatter_day(
    kind: str,
    rng: np.random.Generator,
    counts: Array,
    pool: dict[str, Array],
    region_codes: list[str],
    day_start_ns: int,
    pick_dst: Callable[[int], Array],
    avoid_ports: frozenset[int],
) -> tuple[Columns, Array, list[Episode]]:
    """One day of backscatter of ``kind`` (bs_tcp / bs_icmp); ``counts`` per region index.

    ``pool`` holds senders per region (``addr``, ``region``, attributes); rows with ``victim``
    set can be attacked, and ``peer`` names the row of the router that reports their ICMP errors.
    Returns the columns, the pool row of each packet's source, and the episodes.
    """
    parts: list[tuple[Columns, Array]] = []
    episodes: list[Episode] = []
    for r in np.flatnonzero(counts):
        rows = np.flatnonzero((pool["region"] == r) & pool["victim"])
        sizes = _episode_sizes(rng, int(counts[r]), len(rows))
        victims = rng.choice(rows, size=len(sizes), replace=False)
        for size, v in zip(sizes.tolist(), victims.tolist(), strict=True):
            cols, src_rows, ep = _episode(
                kind, rng, size, v, pool, region_codes[r], day_start_ns, pick_dst, avoid_ports
            )
            parts.append((cols, src_rows))
            episodes.append(ep)
    if not parts:
        return empty_columns(0), np.zeros(0, np.int64), []
    cols = {k: np.concatenate([p[0][k] for p in parts]) for k in parts[0][0]}
    return cols, np.concatenate([p[1] for p in parts]), episodes


def _episode(
    kind: str,
    rng: np.random.Generator,
    n: int,
    v: int,
    pool: dict[str, Array],
    region: str,
    day_start_ns: int,
    pick_dst: Callable[[int], Array],
    avoid_ports: frozenset[int],
) -> tuple[Columns, Array, Episode]:
    rate = rng.uniform(40.0, 400.0)  # packets per minute
    seconds = np.clip(60.0 * n / rate, 62.0, 1.9 * n)  # >= 60 s and >= 30 packets/minute
    duration = int(min(seconds * 1e9, DAY_NS - 2 * EDGE_NS - 1))
    start = day_start_ns + int(rng.integers(EDGE_NS, DAY_NS - EDGE_NS - duration))
    offsets = np.sort(rng.integers(0, duration + 1, size=n))
    offsets[0], offsets[-1] = 0, duration
    cols = empty_columns(n)
    cols["ts"][:] = start + offsets
    cols["dst"][:] = pick_dst(n)  # the darknet addresses the attacker spoofed
    victim, port = int(pool["addr"][v]), int(pool["sport"][v])
    ttl0 = int(INITIAL_TTL[pool["variant"][v]])
    cols["ip_id"][:] = rng.integers(0, 65536, size=n)
    src_rows = np.full(n, v, dtype=np.int64)
    if kind == "bs_tcp":
        response = str(rng.choice(["syn-ack", "rst-ack", "rst"], p=[0.6, 0.25, 0.15]))
        cols["protocol"][:] = TCP
        cols["sport"][:] = port
        cols["dport"][:] = random_ports(rng, n, avoid_ports)  # the spoofed source ports
        cols["tcp_seq"][:] = rng.integers(0, 1 << 32, size=n, dtype=np.uint64)
        cols["ttl"][:] = ttl0 - int(pool["hops"][v])
        cols["ip_flags"][:] = DF if ttl0 == 64 else 0
        cols["length"][:] = 40
        if response == "syn-ack":
            cols["tcp_flags"][:] = SYN | ACK
            cols["tcp_ack"][:] = rng.integers(1, 1 << 32, size=n, dtype=np.uint64)
            cols["tcp_window"][:] = pool["window"][v]
            cols["tcp_opt_len"][:], cols["tcp_opt_kinds"][:], cols["tcp_mss"][:] = 4, MSS_ONLY, 1460
            cols["length"][:] = 44
        else:
            cols["tcp_flags"][:] = RST | ACK if response == "rst-ack" else RST
            if response == "rst-ack":
                cols["tcp_ack"][:] = rng.integers(1, 1 << 32, size=n, dtype=np.uint64)
        reporter = victim
    else:
        response = str(rng.choice(["echo-reply", "unreachable", "time-exceeded"], p=[0.4, 0.4, 0.2]))
        cols["protocol"][:] = ICMP
        reporter = victim
        if response == "echo-reply":
            cols["icmp_type"][:] = 0
            cols["length"][:] = 84 if ttl0 != 128 else 60
        else:
            code = int(rng.choice([3, 1, 13])) if response == "unreachable" else 0
            inner = UDP if code == 3 or (response == "time-exceeded" and rng.random() < 0.5) else TCP
            if code != 3:  # host unreachable, filtered, TTL exceeded: told by a router
                peer = int(pool["peer"][v])
                reporter, ttl0 = int(pool["addr"][peer]), 255
                src_rows[:] = peer
            cols["icmp_type"][:] = 3 if response == "unreachable" else 11
            cols["icmp_code"][:] = code
            cols["inner_protocol"][:] = inner
            cols["inner_src"][:] = cols["dst"]
            cols["inner_dst"][:] = victim
            cols["inner_sport"][:] = rng.integers(1024, 65536, size=n)
            cols["inner_dport"][:] = port
            cols["length"][:] = 56  # 20 IP + 8 ICMP + quoted 20 IP + 8 bytes of L4
        cols["ttl"][:] = ttl0 - int(pool["hops"][v])
    cols["src"][:] = reporter
    ep = Episode(
        victim,
        reporter,
        region,
        "tcp" if kind == "bs_tcp" else "icmp",
        response,
        port,
        start,
        start + duration,
        n,
    )
    return cols, src_rows, ep


def separate_fingerprints(cols: Columns, kind_of_row: Array, kinds: tuple[str, ...]) -> None:
    """Nudge random fields so each packet matches only its own tool's fingerprint.

    Only values the tools draw at random change, each with odds of 2^-16 or 2^-32: Mirai
    keeps seq == dst and nobody else has it; only Masscan has ip_id == (dst ^ dport ^ seq)
    & 0xFFFF; only ZMap before v4.1 (no 12-byte options) has ip_id 54321.
    """
    masscan = kind_of_row == kinds.index("masscan")
    mirai = kind_of_row == kinds.index("mirai")
    old_zmap = (kind_of_row == kinds.index("zmap")) & (cols["tcp_opt_len"] != 12)
    tcp = cols["protocol"] == TCP
    for _ in range(32):
        formula = ((cols["dst"] ^ cols["dport"].astype(np.uint32) ^ cols["tcp_seq"]) & 0xFFFF).astype(
            np.uint16
        )
        cols["ip_id"][masscan] = formula[masscan]
        seq_clash = tcp & ~mirai & (cols["tcp_seq"] == cols["dst"])
        seq_clash |= masscan & (formula == ZMAP_OLD_IP_ID)
        id_clash = ~masscan & (cols["ip_id"] == formula)
        seq_clash |= id_clash & old_zmap
        id_clash &= ~old_zmap
        stray = ~masscan & ~old_zmap & (cols["ip_id"] == ZMAP_OLD_IP_ID)
        if not (seq_clash.any() or id_clash.any() or stray.any()):
            return
        cols["tcp_seq"][seq_clash] ^= np.uint32(0x80000001)
        cols["ip_id"][id_clash] ^= np.uint16(1)
        cols["ip_id"][stray] ^= np.uint16(2)
    raise DarkscopeError("fingerprint separation did not converge")  # odds below 2^-500
