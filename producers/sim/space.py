"""The simulated darknet: the sensor's IPv4 prefixes, destinations drawn uniformly over them,
and its IPv6 prefixes, if any, where the simulator plants IPv6 traffic (producers.sim.ipv6)."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from core.errors import ConfigError

__all__ = ["SensorSpace"]

Array = npt.NDArray[Any]


class SensorSpace:
    """The darknet: one or more IPv4 prefixes, addresses drawn uniformly from their union, and
    optional IPv6 prefixes."""

    def __init__(self, prefixes: str | Sequence[str]) -> None:
        items = [prefixes] if isinstance(prefixes, str) else list(prefixes)
        try:
            nets = [ipaddress.ip_network(p, strict=False) for p in items]
        except ValueError as exc:
            raise ConfigError(f"bad sensor prefix: {exc}") from exc
        self.v6 = [n for n in nets if isinstance(n, ipaddress.IPv6Network)]
        nets = [n for n in nets if n.version == 4]
        if not nets:
            raise ConfigError(f"sensor prefixes must include an IPv4 network, got {items}")
        self.prefixes = [str(n) for n in nets] + [str(n) for n in self.v6]
        self.first = np.array([int(n.network_address) for n in nets], dtype=np.int64)
        self.sizes = np.array([n.num_addresses for n in nets], dtype=np.int64)
        self.cum = np.cumsum(self.sizes)

    def ranges(self) -> list[tuple[int, int]]:
        """(first, last) address of each prefix."""
        return [(int(f), int(f + s - 1)) for f, s in zip(self.first, self.sizes, strict=True)]

    def pick(self, rng: np.random.Generator, n: int) -> Array:
        """``n`` darknet addresses, uniform over all prefixes."""
        pos = rng.integers(0, int(self.cum[-1]), size=n)
        net = np.searchsorted(self.cum, pos, side="right")
        return (self.first[net] + pos - (self.cum[net] - self.sizes[net])).astype(np.uint32)

    def pick6(self, rng: np.random.Generator, n: int) -> Array:
        """``n`` IPv6 darknet addresses (``V16``), uniform over the first IPv6 prefix's lowest
        2^64 addresses (all of it for a /64 or longer)."""
        if not self.v6:
            raise ConfigError("the sensor monitors no IPv6 prefix")
        net = self.v6[0]
        span = min(net.num_addresses, 2**64)
        low = rng.integers(0, span, size=n, dtype=np.uint64) if span > 1 else np.zeros(n, np.uint64)
        raw = np.zeros((n, 16), np.uint8)
        raw[:] = np.frombuffer(net.network_address.packed, np.uint8)
        raw[:, 8:] |= low.astype(">u8").view(np.uint8).reshape(n, 8)
        return raw.view("V16").reshape(n)
