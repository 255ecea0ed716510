"""Scanner and backscatter fingerprints: one rule per tool's template, on whole batches (NumPy).

Each rule is a function of header fields only, written from the tool's own source code (file
and line cited at each one), and returns a boolean mask over the batch's packets. A rule is a
*shape* (the fields the tool's template fixes) and, for some tools, a *key*: a field the tool
computes per packet that other traffic matches by chance once in 2^key_bits (Mirai's 32-bit
sequence, old ZMap's IP id, Masscan's 16-bit cookie). A rule states its evidence in bits:
how rarely a packet of other traffic matches it (key bits plus the shape's measured rarity,
``bench/fingerprint_rates.py`` measures it on the negative controls). That fixes how many
matching packets confirm a source (:class:`SourceVerdicts`): a rule of at least
``CONFIRM_AT_ONCE_BITS`` confirms on its first match, which a single-address sensor (one
probe per scan) needs; a weaker one needs ``SEVERAL`` matches making up at least half of
the source's packets. IP id 54321 alone (16 bits; an Nmap probe of the shared SYN scan carries
it by chance) is no rule at all. The per-packet flags (``fp_flags``) and the
per-source verdict (``fp_verdict``) are separate columns of the enriched batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from schemas.batch import PacketBatch
from schemas.fingerprints import Fingerprint
from streams.sketch import ipv6_keys, mix64

__all__ = [
    "CONFIRM_AT_ONCE_BITS",
    "FINGERPRINTS",
    "RULES",
    "SEVERAL",
    "Rule",
    "SourceVerdicts",
    "backscatter",
    "flags_of",
    "icmp_echo_scan",
    "masscan",
    "mirai",
    "nmap_syn",
    "not_applicable",
    "packet_flags",
    "packet_rules",
    "zmap",
]

Mask = npt.NDArray[np.bool_]
Predicate = Callable[[PacketBatch], Mask]

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
TCP, UDP, ICMP, ICMPV6 = 6, 17, 1, 58
DF = 0x2

CONFIRM_AT_ONCE_BITS = 20.0  # one chance match in ~1M packets: a first match confirms
SEVERAL = 3  # matches that confirm under a weaker rule (with at least MIN_RATIO of the packets)
MIN_RATIO = 0.5

# ZMap >= 4.1 SYN options, bytes 020405b4 01030308 01010402: MSS 1460, NOP, WS 8, NOP, NOP,
# SACK permitted; as option kinds packed from the most significant byte (see packet_batch.avsc).
ZMAP41_OPTION_KINDS = 0x0201030101040000


def _mask(x: Any) -> Mask:
    return np.asarray(x, dtype=np.bool_)


def _syn_alone(b: PacketBatch) -> Mask:
    """TCP with SYN alone: no ACK, RST, FIN, PSH, URG, ECE or CWR. Every scanner below sets
    SYN only; SYN+ECE+CWR is an ECN-setup SYN (RFC 3168), as OS stacks and flood tools send."""
    return _mask((b["protocol"] == TCP) & (b["tcp_flags"] == SYN))


def _syn4(b: PacketBatch) -> Mask:
    return _mask(_syn_alone(b) & (b["ip_version"] == 4))


# --- Mirai ------------------------------------------------------------------------------------
# jgamblin/Mirai-Source-Code mirai/bot/scanner.c, scanner_init()'s SYN spew loop:
# ``iph->daddr = get_random_ip(); ... tcph->seq = iph->daddr;`` (both in network order, and
# both columns hold the big-endian field as an integer); ``tcph->syn = TRUE`` alone.
def _mirai_key(b: PacketBatch) -> Mask:
    return _mask(b["tcp_seq"] == b["dst"])


# --- ZMap -------------------------------------------------------------------------------------
# Before v4.1: zmap/zmap @ 8de8833 src/probe_modules/packet.c:91-92 make_ip_header():
# ``iph->ip_id = htons(54321)``, ``iph->ip_off = 0`` (DF clear); :113-116 make_tcp_header():
# ``th_off = 5`` (no options; v3.0 added set_mss_option(), 02 04 05 b4, #673, 2021) and
# ``th_win = htons(65535)``; module_tcp_synscan.c:96 ``make_tcp_header(tcp_header, TH_SYN)``.
def _zmap_pre41_shape(b: PacketBatch) -> Mask:
    opt_len = b["tcp_opt_len"]
    options = (opt_len == 0) | ((opt_len == 4) & (b["tcp_mss"] == 1460))  # 4 bytes: the MSS alone
    return _mask(_syn4(b) & (b["tcp_window"] == 65535) & ((b["ip_flags"] & DF) == 0) & options)


def _zmap_pre41_key(b: PacketBatch) -> Mask:
    return _mask(b["ip_id"] == 54321)


# From v4.1 (2024): send.c:419-421 passes ``(uint16_t)(validation[...] & 0xFFFF)`` as the IP
# id (AES of src, dst, dport: random to an observer, #798 "Prevent fingerprinting ZMap");
# state.c:59 ``.probe_ttl = IPDEFTTL`` (64, #850); module_tcp_synscan.c:47-66 picks
# WINDOWS_OS_OPTIONS by default (#855), packet.c:257-260: MSS 1460, NOP + WS 8, NOP NOP + SACK
# permitted. Window and DF stay as above. Windows sends the same option bytes with TTL 128, DF
# set and window 64240 / 8192, so TTL <= 64, DF clear and window 65535 tell them apart. No key
# field: the evidence is the shape alone.
def _zmap41_shape(b: PacketBatch) -> Mask:
    return _mask(
        _syn4(b)
        & (b["tcp_window"] == 65535)
        & ((b["ip_flags"] & DF) == 0)
        & (b["tcp_opt_len"] == 12)
        & (b["tcp_opt_kinds"] == ZMAP41_OPTION_KINDS)
        & (b["tcp_mss"] == 1460)
        & (b["tcp_wscale"] == 8)
        & (b["ttl"] <= 64)
    )


# --- Masscan ----------------------------------------------------------------------------------
# robertdavidgraham/masscan @ 2be4093 src/templ-pkt.c:942 template_set_target_ipv4():
# ``ip_id = ip_them ^ port_them ^ seqno`` stored in the 16-bit id field (seqno: the SYN
# cookie); default_tcp_template (templ-pkt.c:30-54): ``"\xFF\x06" /* TTL=255 */`` (received
# TTL > 128 after any path), ``"\x02" /* SYN */``, window ``"\x04\x01"`` (1025, with MSS 1460,
# since commit 4f89257, 2023-11; ``"\x04\x0"`` = 1024 and no options before). Options may
# vary (--tcp-mss, --tcp-sackok, ...), the window cannot.
#
# UDP: the same function computes ``ip_id = ip_them ^ port_them ^ seqno`` for UDP probes
# (``port_them &= 0xFFFF`` at :905 leaves the UDP port), but the cookie ``seqno`` is in no
# header: udp_payload_fixup() (:618-660) writes it into the payload only where the port's
# payload has a field for it: templ-payloads.c:76, 93, 109, 257 (DNS 53, portmapper 111,
# NetBIOS 137, NFS 2049) through dns_set_cookie(), its low 16 bits as the first two payload
# bytes; SNMP 161, CoAP 5683, memcached 11211 and ISAKMP 500 their own fields. NTP's
# ntp_set_cookie() writes nothing, the other payloads (echo, TFTP, SSDP, SIP, ...) have no
# cookie, and a port without a payload sends none. darkscope keeps headers only, so a UDP
# probe's cookie is never visible to it: Masscan's UDP probes are not matched (TCP only).
def _masscan_shape(b: PacketBatch) -> Mask:
    return _mask(_syn4(b) & (b["ttl"] > 128) & np.isin(b["tcp_window"], np.array([1024, 1025], np.uint16)))


def _masscan_key(b: PacketBatch) -> Mask:
    expected = (b["dst"] ^ b["dport"].astype(np.uint32) ^ b["tcp_seq"]) & 0xFFFF
    return _mask(b["ip_id"] == expected.astype(np.uint16))


# --- Nmap -------------------------------------------------------------------------------------
# nmap/nmap tcpip.cc: window 1024 for SYN probes, scan_engine_raw.cc: the MSS 1460 option
# alone; older Nmap picked the window as 1024 * (n + 1), n in 0..3, which the shared captures
# show as 1024 * (TTL % 4 + 1). A shape only: no key field.
def _nmap_shape(b: PacketBatch) -> Mask:
    win = b["tcp_window"].astype(np.uint32)
    old_window = win == 1024 * (b["ttl"].astype(np.uint32) % 4 + 1)
    return _mask(
        _syn_alone(b) & ((win == 1024) | old_window) & (b["tcp_opt_len"] == 4) & (b["tcp_mss"] == 1460)
    )


# --- classes of traffic (not tools) -----------------------------------------------------------
def backscatter(b: PacketBatch) -> Mask:
    """Replies of victims of spoofed floods (CAIDA corsaro's backscatter rule).

    TCP with SYN+ACK or RST; ICMP echo reply (0), unreachable (3), source quench (4),
    redirect (5), time exceeded (11), parameter problem (12), timestamp reply (14),
    information reply (16), address mask reply (18); ICMPv6 errors (1-4) and echo reply (129).
    """
    flags = b["tcp_flags"]
    tcp = (b["protocol"] == TCP) & (((flags & (SYN | ACK)) == (SYN | ACK)) | ((flags & RST) != 0))
    icmp_types = np.isin(b["icmp_type"], np.array([0, 3, 4, 5, 11, 12, 14, 16, 18], dtype=np.uint8))
    icmp = (b["protocol"] == ICMP) & (b["ip_version"] == 4) & icmp_types
    icmp6_types = np.isin(b["icmp_type"], np.array([1, 2, 3, 4, 129], dtype=np.uint8))
    icmp6 = (b["protocol"] == ICMPV6) & icmp6_types
    return _mask(tcp | icmp | icmp6)


def icmp_echo_scan(b: PacketBatch) -> Mask:
    """ICMP / ICMPv6 echo request (ping sweep) to a darknet address."""
    v4 = (b["protocol"] == ICMP) & (b["ip_version"] == 4) & (b["icmp_type"] == 8)
    v6 = (b["protocol"] == ICMPV6) & (b["icmp_type"] == 128)
    return _mask(v4 | v6)


# Bits of a batch's ``truncated`` column (producers.transport): the snaplen cut the L4 header,
# or the TCP options. A rule that reads a field the capture lost is not applicable to the packet
# (as corsaro's filters answer): it does not match, and the field's 0 is never read as a value.
TRUNC_L4, TRUNC_TCP_OPTIONS = 1, 2
_READS_OPTIONS = frozenset({"zmap_pre41", "zmap41", "nmap_syn"})


def not_applicable(b: PacketBatch, rule: str) -> Mask:
    """Packets ``rule`` cannot judge: the snaplen cut a header field it reads (every rule
    reads the L4 header; some the TCP options)."""
    cut = TRUNC_L4 | (TRUNC_TCP_OPTIONS if rule in _READS_OPTIONS else 0)
    return _mask((b["truncated"] & cut) != 0)


@dataclass(frozen=True)
class Rule:
    """One template of one tool: its shape, its key field if any, and the evidence of a match.

    ``shape_bits`` is how rarely the shape alone matches other traffic, measured on the
    negative controls (a lower bound when nothing matched: 3 / packets, the rule of three);
    None for a rule that names a class of traffic (backscatter, ping) rather than a tool.
    """

    name: str
    fingerprint: Fingerprint
    shape: Predicate
    key: Predicate | None
    key_bits: int
    shape_bits: float | None

    def __call__(self, b: PacketBatch) -> Mask:
        """Where the packets match the rule (never where it is not applicable)."""
        m = self.shape(b)
        m = m if self.key is None else _mask(m & self.key(b))
        return _mask(m & ~not_applicable(b, self.name)) if b["truncated"].any() else m

    @property
    def bits(self) -> float | None:
        """Evidence of one matching packet: -log2 of the chance that other traffic matches."""
        return None if self.shape_bits is None else self.key_bits + self.shape_bits

    @property
    def confirm(self) -> int:
        """Matching packets that confirm a source: 1 for strong evidence, else SEVERAL."""
        bits = self.bits
        return 1 if bits is None or bits >= CONFIRM_AT_ONCE_BITS else SEVERAL


def _log2_rate(matches: int, packets: int) -> float:
    return -math.log2(max(matches, 3) / packets)


# Shape rarity is measured on the darknet background of the shared RRSIG capture (4,412 packets
# to one honeypot address, less its 8 ZMap probes: 4,404); where the shape never matched there,
# the rule-of-three bound -log2(3 / 4,404) = 10.5 bits. bench/fingerprint_rates.py prints these
# figures and each rule's false matches on every negative control.
RULES: tuple[Rule, ...] = (
    Rule("mirai", Fingerprint.MIRAI, _syn4, _mirai_key, 32, 0.0),
    Rule("zmap_pre41", Fingerprint.ZMAP, _zmap_pre41_shape, _zmap_pre41_key, 16, _log2_rate(0, 4_404)),
    # No key; the shape without the MSS value matched 4 SYNs (MSS 1398 / 1424) in 2021, before
    # v4.1 existed: 10.1 bits, so a source needs several matching probes.
    Rule("zmap41", Fingerprint.ZMAP, _zmap41_shape, None, 0, _log2_rate(4, 4_404)),
    # TTL > 128 and window 1024 / 1025 matched 90 SYNs there (5.6 bits), none with the cookie.
    Rule("masscan", Fingerprint.MASSCAN, _masscan_shape, _masscan_key, 16, _log2_rate(90, 4_404)),
    Rule("backscatter", Fingerprint.BACKSCATTER, backscatter, None, 0, None),
    # 21 SYNs there, from 20 sources (7.7 bits): Nmap-shaped, but a shape only.
    Rule("nmap_syn", Fingerprint.NMAP_SYN, _nmap_shape, None, 0, _log2_rate(21, 4_404)),
    Rule("icmp_echo_scan", Fingerprint.ICMP_ECHO_SCAN, icmp_echo_scan, None, 0, None),
)


def _any_of(fingerprint: Fingerprint) -> Predicate:
    rules = [r for r in RULES if r.fingerprint == fingerprint]

    def predicate(b: PacketBatch) -> Mask:
        m = np.zeros(len(b), dtype=np.bool_)
        for r in rules:
            m |= r(b)
        return m

    predicate.__name__ = fingerprint.name.lower() if fingerprint.name else "fingerprint"
    predicate.__doc__ = f"Packets matching any {predicate.__name__} rule of RULES."
    return predicate


mirai = _any_of(Fingerprint.MIRAI)
zmap = _any_of(Fingerprint.ZMAP)
masscan = _any_of(Fingerprint.MASSCAN)
nmap_syn = _any_of(Fingerprint.NMAP_SYN)

FINGERPRINTS: dict[Fingerprint, Predicate] = {
    Fingerprint.MIRAI: mirai,
    Fingerprint.ZMAP: zmap,
    Fingerprint.MASSCAN: masscan,
    Fingerprint.BACKSCATTER: backscatter,
    Fingerprint.NMAP_SYN: nmap_syn,
    Fingerprint.ICMP_ECHO_SCAN: icmp_echo_scan,
}
# Fingerprint bits of every combination of rule bits: one gather turns rule hits into flags.
_FLAGS_OF = np.zeros(1 << len(RULES), np.uint16)
for _i, _rule in enumerate(RULES):
    _FLAGS_OF[(np.arange(len(_FLAGS_OF)) & (1 << _i)) != 0] |= np.uint16(_rule.fingerprint)


def packet_rules(b: PacketBatch) -> npt.NDArray[np.uint16]:
    """Per packet, a bit mask of the RULES it matches (bit i: ``RULES[i]``)."""
    hits = np.zeros(len(b), dtype=np.uint16)
    for i, rule in enumerate(RULES):
        hits[rule(b)] |= np.uint16(1 << i)
    return hits


def flags_of(hits: npt.NDArray[np.uint16]) -> npt.NDArray[np.uint16]:
    """The Fingerprint bits of the rules in each ``packet_rules`` mask."""
    return _FLAGS_OF[hits]


def packet_flags(b: PacketBatch) -> npt.NDArray[np.uint16]:
    """Per packet, the OR of the Fingerprint bits whose rules match."""
    return flags_of(packet_rules(b))


def source_keys(b: PacketBatch) -> npt.NDArray[np.uint64]:
    """A 64-bit key per packet's source: the IPv4 address, or a hash of the IPv6 address."""
    keys = b["src"].astype(np.uint64)
    v6 = b["ip_version"] == 6
    if v6.any():
        keys[v6] = ipv6_keys(b["src6"][v6])
    return keys


_DELTA_MIN = 16384  # new sources indexed apart before a merge into the main index
_COUNT_MAX = np.iinfo(np.uint32).max  # a source's counters stop there (a confirmation needs 3)
_FILTER_BITS = 24  # 16 MiB of flags: ~6 % false positives with a million sources tracked


def _filter_slot(keys: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """Filter slot of each source key: the top bits of its 64-bit mix."""
    return mix64(keys) >> np.uint64(64 - _FILTER_BITS)


def _grown(a: npt.NDArray[Any], rows: int) -> npt.NDArray[Any]:
    """``a`` with ``rows`` rows: its own first, zeros after."""
    out = np.zeros((rows, *a.shape[1:]), a.dtype)
    out[: len(a)] = a
    return out


class SourceVerdicts:
    """Per-source confirmation of fingerprints across batches (state of one worker).

    A source is confirmed for a rule's fingerprint once ``rule.confirm`` of its packets match
    the rule: at once for rules of at least CONFIRM_AT_ONCE_BITS, else SEVERAL matches that
    are also at least ``min_ratio`` of its packets since its first match (a source matching
    a weak rule now and then by chance is never confirmed). Confirmation is sticky. Only
    sources that matched at least once are tracked, at most ``capacity`` of them (least
    recently seen evicted).

    Each worker holds one (streams/state.py) and sees the batches of its packets partitions,
    which sensors publish unkeyed: a source's packets meet several instances. Rules that
    confirm at once confirm the same sources however batches are spread; weak rules give the
    verdicts of one instance only when all of a source's packets reach the same instance
    (tests/streams/test_fingerprint_workers.py).

    The state is columnar (sorted source keys with parallel counters) and every batch is
    merged into it with NumPy, at a cost independent of how many of its sources match.
    """

    def __init__(
        self, rules: tuple[Rule, ...] = RULES, min_ratio: float = MIN_RATIO, capacity: int = 1_000_000
    ) -> None:
        """The rules (those ``packet_rules`` numbers), the weak rules' ratio, and how many
        sources to remember."""
        self.min_ratio = min_ratio
        self.capacity = capacity
        self._fp = np.array([int(r.fingerprint) for r in rules], np.int64)
        self._confirm = np.array([r.confirm for r in rules], np.int64)
        self._several = self._confirm > 1
        # Source key -> row (a sorted index); per row: packets since the source's first match
        # and matches per rule (``_counts``, 32-bit, saturating: confirmation needs 3 of them),
        # confirmed Fingerprint bits (``_verdicts``) and the batch that last saw it (``_seen``,
        # for eviction). Rows are appended (doubling, up to the capacity) and rebuilt only on
        # eviction.
        self._n = 0
        self._index_keys = np.zeros(0, np.uint64)  # sorted source keys ...
        self._index_rows = np.zeros(0, np.int64)  # ... and their rows
        self._delta_keys = np.zeros(0, np.uint64)  # sources added since the last merge
        self._delta_rows = np.zeros(0, np.int64)
        self._filter = np.zeros(1 << _FILTER_BITS, dtype=bool)  # slots of the tracked sources
        self._keys = np.zeros(1024, np.uint64)
        self._counts = np.zeros((1024, len(self._fp) + 1), np.uint32)
        self._verdicts = np.zeros(1024, np.uint16)
        self._seen = np.zeros(1024, np.int64)
        self._batch = 0

    @property
    def _confirmed(self) -> npt.NDArray[np.uint16]:
        return self._verdicts[: self._n]

    def __len__(self) -> int:
        return self._n

    def update(
        self,
        b: PacketBatch,
        hits: npt.NDArray[np.uint16],
        sources: tuple[npt.NDArray[np.uint64], npt.NDArray[np.intp]] | None = None,
    ) -> npt.NDArray[np.uint16]:
        """Fold a batch into the state; return each packet's source verdict bits.

        ``hits`` is ``packet_rules(b)``; ``sources`` is ``np.unique(source_keys(b),
        return_inverse=True)`` if known already.
        """
        if not len(b):
            return np.zeros(0, dtype=np.uint16)
        self._batch += 1
        uniq, inverse = sources if sources is not None else np.unique(source_keys(b), return_inverse=True)
        matched_any = np.zeros(len(uniq), dtype=bool)
        matched_any[inverse[hits != 0]] = True
        row_of = self._rows_of(uniq)
        found = row_of >= 0
        new = np.flatnonzero(matched_any & ~found)
        if len(new):
            n = self._n
            self._grow(n + len(new))
            row_of[new] = np.arange(n, n + len(new))
            self._index_new(uniq[new], row_of[new])
            self._keys[n : n + len(new)] = uniq[new]
            self._counts[n : n + len(new)] = 0
            self._verdicts[n : n + len(new)] = 0
            self._n += len(new)
        tracked = np.flatnonzero(row_of >= 0)
        verdict = np.zeros(len(uniq), dtype=np.uint16)
        if not len(tracked):
            return verdict[inverse]
        rows = row_of[tracked]
        st = self._counts[rows].astype(np.int64)
        # A source first matching in this batch counts its packets from that match on, as if
        # the batch had been fed packet by packet; known sources count every packet.
        if len(new):
            flagged = np.flatnonzero(hits != 0)
            first = np.full(len(uniq), len(b), np.int64)
            np.minimum.at(first, inverse[flagged], flagged)
            first[found] = 0
            counted = np.arange(len(b)) >= first[inverse]
            st[:, 0] += np.bincount(inverse[counted], minlength=len(uniq))[tracked]
        else:
            st[:, 0] += np.bincount(inverse, minlength=len(uniq))[tracked]
        for i in range(len(self._fp)):
            matched = inverse[(hits & np.uint16(1 << i)) != 0]
            if len(matched):
                st[:, i + 1] += np.bincount(matched, minlength=len(uniq))[tracked]
        m = st[:, 1:]
        ok = m >= self._confirm
        ok[:, self._several] &= m[:, self._several] >= self.min_ratio * st[:, :1]
        bits = self._verdicts[rows] | np.bitwise_or.reduce(np.where(ok, self._fp, 0), axis=1).astype(
            np.uint16
        )
        self._counts[rows] = np.minimum(st, _COUNT_MAX)
        self._verdicts[rows] = bits
        self._seen[rows] = self._batch
        verdict[tracked] = bits
        if self._n > self.capacity:
            self._evict()
        return verdict[inverse]

    def _rows_of(self, keys: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
        """Row of each (sorted, distinct) key in the state, -1 for sources not tracked."""
        row_of = np.full(len(keys), -1, np.int64)
        # Most of a batch's sources never matched anything: a one-bit-per-hash filter rules
        # them out with one gather, and only the rest are searched for in the sorted index.
        maybe = np.flatnonzero(self._filter[_filter_slot(keys)])
        keys = keys[maybe]
        for index_keys, index_rows in (
            (self._index_keys, self._index_rows),
            (self._delta_keys, self._delta_rows),
        ):
            if not len(index_keys):
                continue
            pos = np.searchsorted(index_keys, keys)
            hit = pos < len(index_keys)
            hit[hit] = index_keys[pos[hit]] == keys[hit]
            row_of[maybe[hit]] = index_rows[pos[hit]]
        return row_of

    def _index_new(self, keys: npt.NDArray[np.uint64], rows: npt.NDArray[np.int64]) -> None:
        """Index new sources (sorted keys): into a small sorted delta, merged into the main
        index when it grows, so a batch does not move the whole index to insert a few keys."""
        self._filter[_filter_slot(keys)] = True
        at = np.searchsorted(self._delta_keys, keys)
        self._delta_keys = np.insert(self._delta_keys, at, keys)
        self._delta_rows = np.insert(self._delta_rows, at, rows)
        if len(self._delta_keys) > max(_DELTA_MIN, len(self._index_keys) // 8):
            at = np.searchsorted(self._index_keys, self._delta_keys)
            self._index_keys = np.insert(self._index_keys, at, self._delta_keys)
            self._index_rows = np.insert(self._index_rows, at, self._delta_rows)
            self._delta_keys, self._delta_rows = self._delta_keys[:0], self._delta_rows[:0]

    def _grow(self, rows: int) -> None:
        if rows > len(self._keys):
            size = max(rows, min(2 * len(self._keys), self.capacity))  # no doubling past it
            # Not np.resize: it tiles the old rows into a new array twice the size it returns.
            self._keys, self._counts, self._verdicts, self._seen = (
                _grown(a, size) for a in (self._keys, self._counts, self._verdicts, self._seen)
            )

    def _evict(self) -> None:
        """Forget the least recently seen sources beyond the capacity."""
        n = self._n
        excess = n - self.capacity
        drop = np.argpartition(self._seen[:n], excess)[:excess]
        keep = np.ones(n, dtype=bool)
        keep[drop] = False
        for column in (self._keys, self._counts, self._verdicts, self._seen):
            column[: self.capacity] = column[:n][keep]
        self._n = self.capacity
        order = np.argsort(self._keys[: self._n])
        self._index_keys, self._index_rows = self._keys[: self._n][order], order.astype(np.int64)
        self._delta_keys, self._delta_rows = self._delta_keys[:0], self._delta_rows[:0]
        self._filter[:] = False
        self._filter[_filter_slot(self._index_keys)] = True

    def confirmed(self, bit: Fingerprint) -> set[int]:
        """Source keys confirmed for ``bit`` so far."""
        return set(self._keys[: self._n][(self._confirmed & int(bit)) != 0].tolist())

    def snapshot(self) -> dict[str, Any]:
        """Counts for logs and health output."""
        return {"tracked_sources": self._n}
