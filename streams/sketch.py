"""HyperLogLog over 64-bit address keys, and darkscope's one 64-bit mixer.

Hour windows count unique sources with a HyperLogLog per value (2^12 registers, ~1.6 %
standard error): an exact hourly set would grow with every source a telescope sees in an hour
(millions on a /16), while the exact figures are ClickHouse's job (its rollups keep uniq
states). The same 64-bit mix spreads addresses over the counts partitions
(:func:`streams.combiner.shard_of`), picks the slots of the fingerprint verdicts' source filter,
and folds IPv6 addresses into 64-bit keys (:func:`ipv6_keys`). Its values are fixed: partial
counts already on the counts topic were routed by them, and a takeover re-reads them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "HLL_P",
    "estimate",
    "hll_estimate",
    "hll_estimates",
    "hll_positions",
    "hll_update",
    "ipv6_keys",
    "mix64",
]

HLL_P = 12

U64 = npt.NDArray[np.uint64]


def mix64(x: U64) -> U64:
    """splitmix64 finaliser: spreads address keys uniformly over 64 bits."""
    with np.errstate(over="ignore"):
        z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def ipv6_keys(addrs: npt.NDArray[np.void]) -> U64:
    """A 64-bit key per 16-byte IPv6 address: both halves mixed (addresses of one /64 differ
    anywhere in the low half), top bit set so that no key equals an IPv4 address."""
    words = np.frombuffer(np.ascontiguousarray(addrs).tobytes(), dtype="<u8").reshape(-1, 2)
    return mix64(mix64(words[:, 0]) ^ words[:, 1]) | np.uint64(1 << 63)


def hll_positions(addrs: U64) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint8]]:
    """Register index and rank of each address in a HyperLogLog of 2^HLL_P registers."""
    h = mix64(addrs)
    idx = (h >> np.uint64(64 - HLL_P)).astype(np.int64)
    rest = (h << np.uint64(HLL_P)) | np.uint64(1 << (HLL_P - 1))  # guard bit bounds the rank
    # rank = leading zeros of `rest` + 1 = 65 - its bit length, which is the binary exponent
    # frexp gives (float64 keeps the top bit exact).
    _, bitlen = np.frexp(rest.astype(np.float64))
    return idx, (65 - bitlen).astype(np.uint8)


def hll_update(registers: npt.NDArray[np.uint8], addrs: U64) -> None:
    """Add addresses to a HyperLogLog register array of 2^HLL_P bytes (in place)."""
    if not len(addrs):
        return
    idx, rank = hll_positions(addrs)
    np.maximum.at(registers, idx, rank)


def hll_estimate(registers: npt.NDArray[np.uint8]) -> int:
    """Cardinality estimate (Flajolet et al. 2007, with the small-range correction)."""
    return int(hll_estimates(registers.reshape(1, -1))[0])


def hll_estimates(registers: npt.NDArray[np.uint8]) -> npt.NDArray[np.int64]:
    """:func:`hll_estimate` of every row of a 2-D register array."""
    if not len(registers):
        return np.zeros(0, np.int64)
    m = registers.shape[1]
    zeros = np.count_nonzero(registers == 0, axis=1)
    return estimate(m, zeros, INV_POW2[registers].sum(axis=1))


def estimate(m: int, zeros: npt.NDArray[Any], total: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
    """HyperLogLog estimates from each sketch's zero registers and sum of 2^-rank."""
    alpha = 0.7213 / (1 + 1.079 / m)
    raw = alpha * m * m / np.maximum(total, 1e-300)
    with np.errstate(divide="ignore"):
        linear = m * np.log(m / np.maximum(zeros, 1))
    small = (raw <= 2.5 * m) & (zeros > 0)
    out: npt.NDArray[np.int64] = np.rint(np.where(small, linear, raw)).astype(np.int64)
    return out


INV_POW2 = np.ldexp(1.0, -np.arange(256, dtype=np.int64))
