"""The simulated darknet: the sensor's IPv4 prefixes, destinations drawn uniformly over them."""

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
    """The darknet: one or more IPv4 prefixes, addresses drawn uniformly from their union."""

    def __init__(self, prefixes: str | Sequence[str]) -> None:
        items = [prefixes] if isinstance(prefixes, str) else list(prefixes)
        try:
            nets = [ipaddress.ip_network(p, strict=False) for p in items]
        except ValueError as exc:
            raise ConfigError(f"bad sensor prefix: {exc}") from exc
        if not nets or any(n.version != 4 for n in nets):
            raise ConfigError(f"sensor prefixes must be IPv4 networks, got {items}")
        self.prefixes = [str(n) for n in nets]
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
