"""IPv4 lookups in a MaxMind DB search tree for a whole array of addresses at once.

maxminddb's ``get()`` walks the tree in C and then decodes the whole data record into Python
dicts; for a city database that decode is most of the ~15 us a lookup costs (DB-IP's records
carry names in ten languages). A darknet batch brings hundreds of addresses never seen
before, but far fewer distinct data records (a city or an AS serves many networks). So the
walk is done here, vectorised with NumPy over the mapped file, and gives per address the
record pointer (a key of the data record) and the prefix length of its network; the caller
decodes each distinct record once.

The layout follows the MaxMind DB File Format Specification 2.0, "Search Tree Section": a
node is two records of ``record_size`` (24, 28 or 32) bits, big-endian; for 28 bits the middle
byte holds the high nibble of the left record and the high nibble of the right one. A record
below ``node_count`` is the next node, equal to it means "no data", above it points into the
data section. IPv4 addresses in an IPv6 tree live under ``::/96``.
"""

from __future__ import annotations

import mmap
from pathlib import Path

import numpy as np
import numpy.typing as npt

from core.errors import ConfigError

__all__ = ["SearchTree"]

TOP = 16  # bits of every address walked once, when the tree is opened

I64 = npt.NDArray[np.int64]


class SearchTree:
    """The search tree of one .mmdb file, for vectorised IPv4 lookups."""

    def __init__(self, path: Path, node_count: int, record_size: int, ip_version: int) -> None:
        """Map ``path``; the three numbers come from the database's metadata."""
        if record_size not in (24, 28, 32):
            raise ConfigError(f"{path}: unsupported record size {record_size}")
        with Path(path).open("rb") as f:
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self._buf = np.frombuffer(self._map, dtype=np.uint8)
        self.node_count = node_count
        self.record_size = record_size
        self._node_bytes = record_size // 4
        if node_count * self._node_bytes > len(self._buf):
            raise ConfigError(f"{path}: search tree larger than the file")
        node, depth = 0, 0
        if ip_version == 6:
            while depth < 96 and node < node_count:  # IPv4 lives under ::/96
                node = int(self._records(np.array([node]), np.zeros(1, np.int64))[0])
                depth += 1
        self._v4_node = node
        # Where the walk stands after the first TOP bits of every address (record and depth;
        # depth < TOP when it ended earlier): a lookup starts there and walks the rest.
        self._top_rec, self._top_depth = self._walk(
            np.arange(1 << TOP, dtype=np.int64) << (32 - TOP), np.full(1 << TOP, node, np.int64), 0, TOP
        )

    def close(self) -> None:
        """Release the mapping."""
        del self._buf
        self._map.close()

    def _records(self, nodes: I64, bits: I64) -> I64:
        """Left (bit 0) or right (bit 1) record of each node."""
        buf = self._buf
        base = nodes * self._node_bytes
        if self.record_size == 24:
            at = base + 3 * bits
            out: I64 = buf[at].astype(np.int64) << 16 | buf[at + 1].astype(np.int64) << 8 | buf[at + 2]
            return out
        if self.record_size == 32:
            at = base + 4 * bits
            out = (
                buf[at].astype(np.int64) << 24
                | buf[at + 1].astype(np.int64) << 16
                | buf[at + 2].astype(np.int64) << 8
                | buf[at + 3]
            )
            return out
        at = base + 4 * bits  # 28 bits: bytes 0-2 (left) or 4-6 (right), nibble from byte 3
        middle = buf[base + 3].astype(np.int64)
        high = np.where(bits == 1, middle & 0x0F, middle >> 4)
        out = high << 24 | buf[at].astype(np.int64) << 16 | buf[at + 1].astype(np.int64) << 8 | buf[at + 2]
        return out

    def _walk(self, a: I64, node: I64, start: int, stop: int) -> tuple[I64, I64]:
        """Walk addresses ``a`` from ``node`` at depth ``start`` down to depth ``stop`` at most:
        (record reached, depth it was reached at; ``stop`` for walks still inside the tree)."""
        rec, depth = node.copy(), np.full(len(a), stop, np.int64)
        active = np.flatnonzero(node < self.node_count)
        depth[node >= self.node_count] = start
        node = node[active]
        for d in range(start, stop):
            if not len(active):
                break
            node = self._records(node, (a[active] >> (31 - d)) & 1)
            done = node >= self.node_count
            rec[active] = node
            if done.any():
                depth[active[done]] = d + 1
                active, node = active[~done], node[~done]
        return rec, depth

    def lookup4(self, addrs: npt.NDArray[np.uint32]) -> tuple[I64, I64]:
        """Per address: the record where its walk ends (``node_count``: no data; above it: a
        data record, the same value for the same record) and its network's prefix length."""
        a = addrs.astype(np.int64)
        top = a >> (32 - TOP)
        rec, depth = self._top_rec[top], self._top_depth[top]
        inside = np.flatnonzero(rec < self.node_count)
        if len(inside):
            rec[inside], depth[inside] = self._walk(a[inside], rec[inside], TOP, 32)
            if (rec[inside] < self.node_count).any():
                raise ConfigError("corrupt search tree: a walk did not end after 32 bits")
        return rec, depth
