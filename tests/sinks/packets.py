"""Hand-written packets straight into a store's ``packets`` table (the views fill from them)."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import pyarrow as pa

from sinks.store import Store


@dataclass(frozen=True)
class Pkt:
    """One packet: when, from where to where, and what the enrichment said of its source."""

    ts: datetime
    src: str
    dst: str = "198.51.100.7"
    sensor: str = "s1"
    protocol: int = 6
    dport: int = 23
    region: str = "US"
    asn: int = 64500
    as_org: str = "Example Net"
    fp_flags: int = 0
    fp_verdict: int = 0


def insert_packets(store: Store, packets: Sequence[Pkt], token: str | None = None) -> None:
    """Insert ``packets`` in one block (deduplicated by ``token`` when given)."""
    table = pa.table(
        {
            "ts": pa.array([p.ts for p in packets], pa.timestamp("ns", tz="UTC")),
            "sensor": [p.sensor for p in packets],
            "ip_version": pa.array([4] * len(packets), pa.uint8()),
            "src": pa.array([int(ipaddress.IPv4Address(p.src)) for p in packets], pa.uint32()),
            "dst": pa.array([int(ipaddress.IPv4Address(p.dst)) for p in packets], pa.uint32()),
            "protocol": pa.array([p.protocol for p in packets], pa.uint8()),
            "dport": pa.array([p.dport for p in packets], pa.uint16()),
            "region": [p.region for p in packets],
            "region_name": [p.region for p in packets],
            "asn": pa.array([p.asn for p in packets], pa.uint32()),
            "as_org": [p.as_org for p in packets],
            "fp_flags": pa.array([p.fp_flags for p in packets], pa.uint16()),
            "fp_verdict": pa.array([p.fp_verdict for p in packets], pa.uint16()),
        }
    )
    store.insert_arrow("packets", table, token)
