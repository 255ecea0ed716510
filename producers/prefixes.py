"""The address space a sensor monitors: prefix membership for whole batches."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from core.errors import ConfigError
from schemas.batch import PacketBatch

__all__ = ["MonitoredSpace"]


class MonitoredSpace:
    """Monitored IPv4 and IPv6 prefixes; an empty space accepts every destination."""

    def __init__(self, prefixes: Sequence[str]) -> None:
        """Parse CIDR prefixes (host bits must be zero)."""
        try:
            nets = [ipaddress.ip_network(p.strip(), strict=True) for p in prefixes]
        except ValueError as exc:
            raise ConfigError(f"bad monitored prefix: {exc}") from exc
        self.networks = nets
        v4 = [n for n in nets if n.version == 4]
        self._v4_net = np.array([int(n.network_address) for n in v4], dtype=np.uint32)
        self._v4_mask = np.array([int(n.netmask) for n in v4], dtype=np.uint32)
        self._v6 = [(int(n.network_address).to_bytes(16, "big"), n.prefixlen) for n in nets if n.version == 6]

    @property
    def address_count(self) -> int:
        """Number of monitored addresses (0 when every destination is accepted)."""
        return sum(n.num_addresses for n in self.networks)

    def __str__(self) -> str:
        return ",".join(str(n) for n in self.networks) or "any"

    def contains(self, batch: PacketBatch) -> npt.NDArray[np.bool_]:
        """Per packet: is its destination monitored?"""
        n = len(batch)
        if not self.networks:
            return np.ones(n, dtype=bool)
        version = batch["ip_version"]
        inside = np.zeros(n, dtype=bool)
        v4 = version == 4
        if len(self._v4_net) and v4.any():
            dst = batch["dst"]
            hit = ((dst[:, None] & self._v4_mask[None, :]) == self._v4_net[None, :]).any(axis=1)
            inside |= v4 & hit
        if self._v6 and (version == 6).any():
            rows = np.flatnonzero(version == 6)
            raw = np.frombuffer(batch["dst6"][rows].tobytes(), dtype=np.uint8).reshape(-1, 16)
            for net, plen in self._v6:
                full, rest = divmod(plen, 8)
                ok = (raw[:, :full] == np.frombuffer(net[:full], dtype=np.uint8)).all(axis=1)
                if rest:
                    mask = (0xFF << (8 - rest)) & 0xFF
                    ok &= (raw[:, full] & mask) == (net[full] & mask)
                inside[rows[ok]] = True
        return inside
