"""Random packet batches for the benchmarks (bench/ is on ``sys.path`` when a script runs)."""

from __future__ import annotations

import numpy as np

from schemas.batch import PacketBatch

__all__ = ["random_batch"]


def random_batch(rng: np.random.Generator, n: int, sensor_id: str, batch_seq: int, t0_ns: int) -> PacketBatch:
    """A batch of ``n`` plausible random IPv4 TCP/UDP packets to 198.51.100.0/24."""
    b = PacketBatch.zeros(sensor_id, batch_seq, n)
    c = b.columns
    c["ts"][:] = t0_ns + np.sort(rng.integers(0, 10**9, n))
    c["ip_version"][:] = 4
    c["src"][:] = rng.integers(1 << 24, 0xDF000000, n, dtype=np.uint32)
    c["dst"][:] = 0xC6336400 + rng.integers(0, 256, n, dtype=np.uint32)
    c["protocol"][:] = rng.choice(np.array([6, 17], dtype=np.uint8), n, p=[0.9, 0.1])
    c["sport"][:] = rng.integers(1024, 65536, n, dtype=np.uint16)
    c["dport"][:] = rng.choice(np.array([23, 6379, 22, 80, 445], dtype=np.uint16), n)
    c["tcp_flags"][:] = np.where(c["protocol"] == 6, 2, 0)
    c["tcp_seq"][:] = rng.integers(0, 2**32, n, dtype=np.uint32)
    c["tcp_window"][:] = rng.integers(1024, 65536, n, dtype=np.uint16)
    c["ip_id"][:] = rng.integers(0, 65536, n, dtype=np.uint16)
    c["ttl"][:] = rng.integers(30, 250, n, dtype=np.uint8)
    c["length"][:] = np.where(c["protocol"] == 6, 40, 28)
    c["total_length"][:] = c["length"]  # what the sink stores as length (schema version 2)
    return b
