"""IPv6 DoS victims: the enrich step names them (the replying source, or the destination an
ICMPv6 error quotes), and the count and merge stages raise a backscatter_episode alert for each
planted IPv6 episode, as for IPv4."""

from __future__ import annotations

import ipaddress
from datetime import datetime
from typing import Any

import numpy as np

from core.settings import WorkerSettings
from producers.sim.ipv6 import VICTIMS
from producers.sim.simulate import simulate_quarter
from schemas.batch import PacketBatch
from schemas.codec import Codec
from schemas.fingerprints import Fingerprint
from streams.alerts import AlertDetector
from streams.enrich import Enricher
from streams.fingerprints import SourceVerdicts
from streams.geo import GeoResolver
from streams.local import LocalCounting
from streams.services import ServiceRegistry

PREFIXES = ["198.51.100.0/24", "2001:db8:dd::/64"]


def _v16(text: str) -> Any:
    return np.frombuffer(ipaddress.IPv6Address(text).packed, "V16")[0]


def test_victim_counts_name_the_ipv6_replier_or_the_destination_an_icmpv6_error_quotes() -> None:
    b = PacketBatch.zeros("s1", 0, 4)
    c = b.columns
    c["ts"][:] = 1_648_771_200 * 10**9
    c["ip_version"][:] = [6, 6, 6, 4]
    c["src6"][:3] = [_v16("2001:db8:a::1"), _v16("2001:db8:ff::1"), _v16("2001:db8:ff::1")]
    c["dst6"][:3] = _v16("2001:db8:dd::9")
    c["protocol"][:] = [6, 58, 58, 6]
    c["tcp_flags"][[0, 3]] = 0x12  # SYN-ACK replies
    c["icmp_type"][1:3] = [1, 3]  # destination unreachable, time exceeded (from a router)
    c["inner_protocol"][1:3] = [17, 6]
    c["inner_dst6"][1:3] = [_v16("2001:db8:b::53"), _v16("2001:db8:c::80")]
    c["src"][3], c["dst"][3] = (
        int(ipaddress.IPv4Address("192.0.2.1")),
        int(ipaddress.IPv4Address("198.51.100.9")),
    )
    with GeoResolver.default() as geo:
        enricher = Enricher(geo, ServiceRegistry.load(), SourceVerdicts())
        e = enricher.enrich(b)
        assert ((e.fp_flags & int(Fingerprint.BACKSCATTER)) != 0).all()
        (victim,) = [p for p in enricher.partials(e)[0] if p.kind == "victim"]
    assert sorted(victim.values) == ["192.0.2.1", "2001:db8:a::1", "2001:db8:b::53", "2001:db8:c::80"]


def test_every_planted_ipv6_episode_is_one_backscatter_alert_on_its_ipv6_victim() -> None:
    """Three simulated days at a sensor with an IPv6 prefix, through the codec, the enrich step
    and the worker's count and merge stages."""
    codec = Codec()
    detector = AlertDetector()
    local = LocalCounting(WorkerSettings(), 2, 1, detector, keep_log=False)
    sim = simulate_quarter("2022Q2", packets_per_day=3000, prefix=PREFIXES, days=3, seed=1)
    with GeoResolver.default() as geo:
        enricher = Enricher(geo, ServiceRegistry.load(), SourceVerdicts(), codec)
        for offset, batch in enumerate(sim.batches()):
            local.enrich(enricher, batch, offset)
    local.idle(0)
    local.run()
    records = [a for a in local.alerts + detector.close_before(2**62) if a["kind"] == "backscatter_episode"]
    planted = [
        (v["victim"], ep)
        for v in sim.ground_truth().to_dict()["backscatter"]["victims"]
        if ":" in v["victim"]
        for ep in v["episodes"]
    ]
    assert sorted({v for v, _ in planted}) == sorted(VICTIMS)
    for victim, ep in planted:
        start, end = (datetime.fromisoformat(ep[k]).timestamp() for k in ("start", "end"))
        mine = [
            a
            for a in records
            if a["key"] == victim
            and a["window_start"].timestamp() <= end
            and a["window_end"].timestamp() > start
        ]
        assert len({a["alert_id"] for a in mine}) == 1, (victim, ep)
        assert [mine[0]["evidence"]["state"], mine[-1]["evidence"]["state"]] == ["open", "close"]
        assert mine[-1]["dimension"] == "victim" and victim in mine[-1]["message"]
