"""Valid inputs the harnesses start from: frames of every link type and protocol the decoder
reads, small captures in every container variant, and a frame of every message schema.

Frames are built field by field with the capture tests' byte builders
(``tests/producers/pktbuild.py``); messages come from the code that writes them (the
enricher, the combiner, the window encoder, the codec), so a seed is what the pipeline sends.
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime
from functools import cache
from typing import Any

import numpy as np

from tests.producers import pktbuild as pb

__all__ = ["captures", "frames", "messages"]

_ZMAP = pb.ZMAP_OPTIONS


def _l3() -> list[bytes]:
    """IP packets: TCP with options, UDP, ICMP errors quoting a datagram, IPv6 with extensions."""
    syn = pb.tcp(40000, 23, options=_ZMAP)
    quoted = pb.ipv4(pb.tcp(23, 40000)[:8], src="198.51.100.7", dst="192.0.2.1")
    v6_dst = bytes.fromhex("20010db8000000000000000000000007")
    return [
        pb.ipv4(syn),
        pb.ipv4(pb.tcp(80, 443, flags=0x12, options=bytes.fromhex("0204ffff0303ff00")), options=bytes(4)),
        pb.ipv4(pb.udp(), proto=17),
        pb.ipv4(pb.icmp(3, 3, quote=quoted), proto=1),
        pb.ipv4(pb.icmp(8), proto=1),
        pb.ipv4(pb.tcp()[:10], total=60),  # cut short
        pb.ipv4(syn, flags=1, frag=0),  # first fragment
        pb.ipv4(b"\x00" * 8, frag=3, proto=6),  # later fragment
        pb.ipv6(pb.tcp(options=_ZMAP), dst=v6_dst),
        pb.ipv6(pb.ext6(44, pb.frag6(17, 0, True, 7)[2:]) + pb.udp(), nh=0),
        pb.ipv6(pb.frag6(6, 0, False, 9) + pb.tcp(), nh=44),
        pb.ipv6(pb.icmp(1, 4, quote=pb.ipv6(pb.udp())[:48]), nh=58),
    ]


def _linked(packet: bytes, linktype: int) -> bytes:
    v6 = packet[0] >> 4 == 6
    if linktype == 1:
        return pb.ether(packet, 0x86DD if v6 else 0x0800)
    if linktype == 113:
        return pb.sll(packet, 0x86DD if v6 else 0x0800)
    if linktype == 276:
        return pb.sll2(packet, 0x86DD if v6 else 0x0800)
    if linktype == 0:
        return pb.null(packet, 30 if v6 else 2)
    if linktype == 108:
        return struct.pack(">I", 24 if v6 else 2) + packet
    return packet  # raw IP link types


LINKTYPES = (1, 101, 113, 276, 0, 108, 12, 14, 228, 229)


def frames() -> list[tuple[int, bytes]]:
    """(link type, frame) pairs: every packet on every link type it fits, plus oddities."""
    out = [(lt, _linked(p, lt)) for lt in LINKTYPES for p in _l3() if not (lt == 228 and p[0] >> 4 == 6)]
    out.append((1, pb.ether(pb.ipv4(pb.tcp()), vlans=[(0x88A8, 10), (0x8100, 20)])))
    out.append((1, pb.arp()))
    out.append((1, pb.ether(pb.ipv4(pb.tcp()))[:20]))
    out.append((147, b"\x00" * 40))  # a link type the decoder does not read
    return out


def captures() -> list[bytes]:
    """pcap (both byte orders, µs and ns) and pcapng (several interfaces, every packet block)."""
    by_lt: dict[int, list[bytes]] = {}
    for lt, f in frames():
        by_lt.setdefault(lt, []).append(f)
    out = [pb.pcap_file(fs, linktype=lt, big=lt % 2 == 0, nano=lt in (1, 113)) for lt, fs in by_lt.items()]
    eth = by_lt[1]
    bad = (
        pb.pcap_header()
        + pb.pcap_record(eth[0], 10**18, caplen=900_000)
        + b"".join(pb.pcap_record(f, 10**18 + i) for i, f in enumerate(eth[:4]))
    )
    out.append(bad)
    for big in (False, True):
        ng = pb.shb(big=big) + pb.idb(1, big=big) + pb.idb(101, tsresol=9, tsoffset=5, big=big)
        ng += pb.idb(113, tsresol=0x88, big=big)
        for i, f in enumerate(eth[:5]):
            ng += pb.epb(f, 1_650_000_000_000_000 + i, big=big)
        ng += pb.epb(by_lt[101][0], 1_650_000_000_000_000_000, iface=1, big=big)
        ng += pb.epb(by_lt[113][0], 1 << 40, iface=2, big=big)
        ng += pb.spb(eth[1], big=big) + pb.opb(eth[2], 7, big=big)
        ng += pb.block(4, b"\x00" * 8, big=big) + pb.block(0x999, b"\x01" * 4, big=big)
        ng += pb.epb(eth[3], 9, iface=7, big=big)  # an interface with no IDB
        ng += pb.shb(big=big) + pb.idb(0, big=big) + pb.epb(by_lt[0][0], 11, big=big)
        out.append(ng)
    return out


@cache
def messages() -> dict[str, list[bytes]]:
    """Frames of every message schema, keyed by record name, as the pipeline writes them."""
    from producers.sim.simulate import simulate_quarter
    from schemas.codec import Codec, dead_letter
    from schemas.names import ALERT, DEAD_LETTER, PACKET_BATCH, PACKET_EVENT, SENSOR_HEALTH
    from schemas.partials import encode_frame, idle_marker
    from schemas.windowcounts import encode_window_counts
    from schemas.windowrows import WindowRows
    from streams.enrich import Enricher
    from streams.fingerprints import SourceVerdicts
    from streams.geo import GeoResolver
    from streams.services import ServiceRegistry

    codec = Codec()
    sim = simulate_quarter("2022Q2", packets_per_day=400, days=1, seed=3, batch_size=12)
    batches = list(sim.batches())[:6]
    out: dict[str, list[bytes]] = {PACKET_BATCH: [codec.encode_batch(b) for b in batches]}
    out[PACKET_EVENT] = codec.encode_events(batches[0].slice(0, 3))
    with GeoResolver.default() as geo:
        enricher = Enricher(geo, ServiceRegistry.load(), SourceVerdicts())
        enriched = [enricher.enrich(b, "packets", 0, i) for i, b in enumerate(batches)]
        out["darkscope.EnrichedBatch"] = [enricher.encode(e) for e in enriched]
        wm = int(batches[-1]["ts"].max())
        partials = [
            encode_frame(codec, f, "packets") for e in enriched[:3] for f in enricher.frames(e, 2, wm)
        ]
    out["darkscope.PartialCounts"] = [
        *partials,
        idle_marker(codec, 0, 1, 2),
        idle_marker(codec, 1, 0, 2, True),
    ]
    rows = WindowRows(
        "port",
        ["23/tcp", "80/tcp", "ICMP"],
        np.array([0, 1, 0], dtype=np.uint8),  # size codes: minute, hour
        np.array([1_648_771_200, 1_648_771_200, 1_648_771_260], dtype=np.int64),
        np.array([0, 1, 2], dtype=np.uint32),
        np.array([5, 9, 1], dtype=np.int64),
        np.array([2, 3, 1], dtype=np.int64),
    )
    out["darkscope.WindowCounts"] = [encode_window_counts(codec, 1, 4, 1_648_771_300, rows)]
    ts = datetime(2022, 5, 8, tzinfo=UTC)
    alert: dict[str, Any] = {
        "alert_id": "surge_packets/port/23/tcp/2022-05-08T00:00",
        "kind": "surge_packets",
        "severity": "warning",
        "dimension": "port",
        "key": "23/tcp",
        "window_start": ts,
        "window_end": ts,
        "observed": 1200.0,
        "baseline": 300.0,
        "score": 9.5,
        "message": "23/tcp surged",
        "sensor_id": None,
        "evidence": {"mad": "12.5"},
    }
    health: dict[str, Any] = {
        "sensor_id": "sim-0",
        "ts": ts,
        "started": ts,
        "source": "simulate:2022Q2",
        "packets_seen": 10,
        "packets_dropped_kernel": 0,
        "packets_malformed": {"not_ip": 2},
        "packets_out_of_prefix": 0,
        "packets_sent": 8,
        "batches_sent": 1,
        "send_failed": 0,
        "monitored_addresses": 256,
        "prefixes": ["198.51.100.0/24"],
        "version": "0.1.0",
    }
    out[ALERT] = [codec.encode(ALERT, alert)]
    out[SENSOR_HEALTH] = [codec.encode(SENSOR_HEALTH, health)]
    out[DEAD_LETTER] = [
        dead_letter(codec, "worker", "undecodable", "bad", ("t", 1, 2), out[PACKET_BATCH][0][:40], b"k")
    ]
    return out
