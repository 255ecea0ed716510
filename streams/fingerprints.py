"""Scanner and backscatter fingerprints: one predicate per tool, on whole batches (NumPy).

Each predicate is a function of header fields only, written from the tool's own source code
(file and line cited at each one), and returns a boolean mask over the batch's packets: True
where the packet matches. A packet may match several predicates; ``packet_flags`` ORs them
into a bit mask whose bits are :class:`Fingerprint`.

Predicates of 16 bits (Masscan's IP id formula, old ZMap's fixed IP id) match unrelated
packets once in 65,536, so a source is *confirmed* as that scanner only when several of its
packets match (:class:`SourceVerdicts`); the per-packet flag and the per-source verdict are
separate columns of the enriched batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from schemas.batch import PacketBatch
from schemas.fingerprints import Fingerprint
from streams.sketch import ipv6_keys, mix64

__all__ = [
    "FINGERPRINTS",
    "SourceVerdicts",
    "backscatter",
    "icmp_echo_scan",
    "masscan",
    "mirai",
    "nmap_syn",
    "packet_flags",
    "zmap",
]

Mask = npt.NDArray[np.bool_]

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
TCP, UDP, ICMP, ICMPV6 = 6, 17, 1, 58
DF = 0x2

# ZMap >= 4.1 SYN options, bytes 020405b4 01030308 01010402: MSS 1460, NOP, WS 8, NOP, NOP,
# SACK permitted; as option kinds packed from the most significant byte (see packet_batch.avsc).
ZMAP41_OPTION_KINDS = 0x0201030101040000


def _mask(x: Any) -> Mask:
    return np.asarray(x, dtype=np.bool_)


def _syn_only(b: PacketBatch) -> Mask:
    """IPv4 or IPv6 TCP with SYN set and ACK, RST, FIN clear (a scanner's probe)."""
    flags = b["tcp_flags"]
    return _mask((b["protocol"] == TCP) & ((flags & (SYN | ACK | RST | FIN)) == SYN))


def mirai(b: PacketBatch) -> Mask:
    """Mirai telnet scanner SYN: TCP sequence number == destination IPv4 address.

    jgamblin/Mirai-Source-Code mirai/bot/scanner.c, scanner_init()'s SYN spew loop:
    ``iph->daddr = get_random_ip(); ... tcph->seq = iph->daddr;`` (both in network order, and
    both columns hold the big-endian field as an integer). Chance match: 2^-32 per packet.
    """
    return _mask(_syn_only(b) & (b["ip_version"] == 4) & (b["tcp_seq"] == b["dst"]))


def zmap(b: PacketBatch) -> Mask:
    """ZMap TCP SYN probe, before and since v4.1.

    zmap/zmap src/probe_modules/packet.c make_ip_header(): ``iph->ip_id = htons(54321)``
    before v4.1, with module_tcp_synscan.c's window 65535 and no options or MSS 1460 only.
    From v4.1 the IP id is random, TTL 64, window 65535 and the options are the fixed bytes
    020405b4 01030308 01010402 (the layout Windows uses, but Windows sends TTL 128 and
    window 64240/8192, so TTL <= 64 and window 65535 tell them apart).
    """
    syn = _syn_only(b) & (b["ip_version"] == 4) & (b["tcp_window"] == 65535)
    opt_len, mss = b["tcp_opt_len"], b["tcp_mss"]
    old = (
        (b["ip_id"] == 54321)
        & ((b["ip_flags"] & DF) == 0)
        & ((opt_len == 0) | ((opt_len == 4) & (mss == 1460)))
    )
    new = (
        (opt_len == 12)
        & (b["tcp_opt_kinds"] == ZMAP41_OPTION_KINDS)
        & (mss == 1460)
        & (b["tcp_wscale"] == 8)
        & (b["ttl"] <= 64)
    )
    return _mask(syn & (old | new))


def zmap_16bit(b: PacketBatch) -> Mask:
    """The part of :func:`zmap` that rests on the 16-bit IP id alone (needs confirmation)."""
    return _mask(zmap(b) & (b["ip_id"] == 54321) & (b["tcp_opt_len"] != 12))


def masscan(b: PacketBatch) -> Mask:
    """Masscan TCP SYN: IP id == (dst ^ dport ^ seq) & 0xFFFF, source TTL 255.

    robertdavidgraham/masscan src/templ-pkt.c tcp_create_packet():
    ``unsigned ip_id = ip_them ^ port_them ^ seqno;`` stored in the 16-bit id field, and
    the template's TTL of 255 (received TTL > 128 after any path). Masscan's UDP probes use
    the same formula with a cookie that is not in the UDP header, so they are not matched.
    """
    expected = (b["dst"] ^ b["dport"].astype(np.uint32) ^ b["tcp_seq"]) & 0xFFFF
    return _mask(
        _syn_only(b) & (b["ip_version"] == 4) & (b["ip_id"] == expected.astype(np.uint16)) & (b["ttl"] > 128)
    )


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


def nmap_syn(b: PacketBatch) -> Mask:
    """Nmap SYN scan: window 1024 with MSS 1460 as the only option.

    nmap/nmap scan_engine_raw.cc sends SYN probes with ``tcp window 1024`` and the MSS option;
    older Nmap picked the window as 1024 * (n + 1), n in 0..3, which the captures in
    shared/captures show as 1024 * (TTL % 4 + 1).
    """
    win = b["tcp_window"].astype(np.uint32)
    old_window = win == 1024 * (b["ttl"].astype(np.uint32) % 4 + 1)
    return _mask(
        _syn_only(b) & ((win == 1024) | old_window) & (b["tcp_opt_len"] == 4) & (b["tcp_mss"] == 1460)
    )


def icmp_echo_scan(b: PacketBatch) -> Mask:
    """ICMP / ICMPv6 echo request (ping sweep) to a darknet address."""
    v4 = (b["protocol"] == ICMP) & (b["ip_version"] == 4) & (b["icmp_type"] == 8)
    v6 = (b["protocol"] == ICMPV6) & (b["icmp_type"] == 128)
    return _mask(v4 | v6)


FINGERPRINTS: dict[Fingerprint, Callable[[PacketBatch], Mask]] = {
    Fingerprint.MIRAI: mirai,
    Fingerprint.ZMAP: zmap,
    Fingerprint.MASSCAN: masscan,
    Fingerprint.BACKSCATTER: backscatter,
    Fingerprint.NMAP_SYN: nmap_syn,
    Fingerprint.ICMP_ECHO_SCAN: icmp_echo_scan,
}


def packet_flags(b: PacketBatch) -> npt.NDArray[np.uint16]:
    """Per packet, the OR of the Fingerprint bits whose predicate matches."""
    flags = np.zeros(len(b), dtype=np.uint16)
    for bit, predicate in FINGERPRINTS.items():
        flags[predicate(b)] |= np.uint16(bit)
    return flags


def source_keys(b: PacketBatch) -> npt.NDArray[np.uint64]:
    """A 64-bit key per packet's source: the IPv4 address, or a hash of the IPv6 address."""
    keys = b["src"].astype(np.uint64)
    v6 = b["ip_version"] == 6
    if v6.any():
        keys[v6] = ipv6_keys(b["src6"][v6])
    return keys


_DELTA_MIN = 16384  # new sources indexed apart before a merge into the main index
_FILTER_BITS = 24  # 16 MiB of flags: ~6 % false positives with a million sources tracked


def _filter_slot(keys: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """Filter slot of each source key: the top bits of its 64-bit mix."""
    return mix64(keys) >> np.uint64(64 - _FILTER_BITS)


class SourceVerdicts:
    """Per-source confirmation of fingerprints across batches (state of one worker).

    A source is confirmed as a scanner when at least ``min_matches`` of its packets match
    the predicate and they are at least ``min_ratio`` of its packets since its first match;
    a source that matched once by chance (1 in 65,536) is never confirmed. 32-bit predicates
    (Mirai) and header-shape ones confirm on the first match. Only sources that matched at
    least once are tracked, at most ``capacity`` of them (least recently seen evicted).

    The state is columnar (sorted source keys with parallel counters) and every batch is
    merged into it with NumPy, at a cost independent of how many of its sources match.
    """

    CONFIRM_SEVERAL = Fingerprint.MASSCAN | Fingerprint.ZMAP

    def __init__(self, min_matches: int = 3, min_ratio: float = 0.5, capacity: int = 1_000_000) -> None:
        """Thresholds for the 16-bit predicates, and how many sources to remember."""
        self.min_matches = min_matches
        self.min_ratio = min_ratio
        self.capacity = capacity
        self._bits = [int(bit) for bit in FINGERPRINTS]
        self._several = np.array([bool(bit & self.CONFIRM_SEVERAL) for bit in self._bits])
        # Source key -> row of ``_state`` (a sorted index); per row: packets since the source's first match,
        # matches per bit, confirmed bits, and the batch that last saw it (for eviction).
        # Rows are appended (the array grows by doubling) and rebuilt only on eviction.
        self._n = 0
        self._index_keys = np.zeros(0, np.uint64)  # sorted source keys ...
        self._index_rows = np.zeros(0, np.int64)  # ... and their rows
        self._delta_keys = np.zeros(0, np.uint64)  # sources added since the last merge
        self._delta_rows = np.zeros(0, np.int64)
        self._filter = np.zeros(1 << _FILTER_BITS, dtype=bool)  # slots of the tracked sources
        self._keys = np.zeros(1024, np.uint64)
        self._state = np.zeros((1024, len(self._bits) + 3), np.int64)
        self._batch = 0

    @property
    def _confirmed(self) -> npt.NDArray[np.int64]:
        return self._state[: self._n, -2]

    def __len__(self) -> int:
        return self._n

    def update(
        self,
        b: PacketBatch,
        flags: npt.NDArray[np.uint16],
        sources: tuple[npt.NDArray[np.uint64], npt.NDArray[np.intp]] | None = None,
    ) -> npt.NDArray[np.uint16]:
        """Fold a batch into the state; return each packet's source verdict bits.

        ``sources`` is ``np.unique(source_keys(b), return_inverse=True)`` if known already.
        """
        if not len(b):
            return np.zeros(0, dtype=np.uint16)
        self._batch += 1
        uniq, inverse = sources if sources is not None else np.unique(source_keys(b), return_inverse=True)
        matched_any = np.zeros(len(uniq), dtype=bool)
        matched_any[inverse[flags != 0]] = True
        row_of = self._rows_of(uniq)
        found = row_of >= 0
        new = np.flatnonzero(matched_any & ~found)
        if len(new):
            n = self._n
            self._grow(n + len(new))
            row_of[new] = np.arange(n, n + len(new))
            self._index_new(uniq[new], row_of[new])
            self._keys[n : n + len(new)] = uniq[new]
            self._state[n : n + len(new)] = 0
            self._n += len(new)
        tracked = np.flatnonzero(row_of >= 0)
        verdict = np.zeros(len(uniq), dtype=np.uint16)
        if not len(tracked):
            return verdict[inverse]
        rows = row_of[tracked]
        st = self._state[rows]
        # A source first matching in this batch counts its packets from that match on, as if
        # the batch had been fed packet by packet; known sources count every packet.
        if len(new):
            flagged = np.flatnonzero(flags != 0)
            first = np.full(len(uniq), len(b), np.int64)
            np.minimum.at(first, inverse[flagged], flagged)
            first[found] = 0
            counted = np.arange(len(b)) >= first[inverse]
            st[:, 0] += np.bincount(inverse[counted], minlength=len(uniq))[tracked]
        else:
            st[:, 0] += np.bincount(inverse, minlength=len(uniq))[tracked]
        for i, bit in enumerate(self._bits, start=1):
            hits = inverse[(flags & np.uint16(bit)) != 0]
            if len(hits):
                st[:, i] += np.bincount(hits, minlength=len(uniq))[tracked]
        m = st[:, 1 : 1 + len(self._bits)]
        ok = m > 0
        several = (m >= self.min_matches) & (m >= self.min_ratio * st[:, :1])
        ok[:, self._several] = several[:, self._several]
        st[:, -2] |= (ok * np.array(self._bits, np.int64)).sum(axis=1)
        st[:, -1] = self._batch
        self._state[rows] = st
        verdict[tracked] = st[:, -2]
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
            size = max(rows, 2 * len(self._keys))
            self._keys = np.resize(self._keys, size)
            self._state = np.resize(self._state, (size, self._state.shape[1]))

    def _evict(self) -> None:
        """Forget the least recently seen sources beyond the capacity."""
        n = self._n
        excess = n - self.capacity
        drop = np.argpartition(self._state[:n, -1], excess)[:excess]
        keep = np.ones(n, dtype=bool)
        keep[drop] = False
        self._keys[: self.capacity] = self._keys[:n][keep]
        self._state[: self.capacity] = self._state[:n][keep]
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
