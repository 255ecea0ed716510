"""The simulator plants IPv6 backscatter and an IPv6 scan at a sensor with an IPv6 prefix,
beside the modelled quarter and without changing it."""

from __future__ import annotations

import ipaddress
from typing import Any

import numpy as np
import pytest

from core.errors import ConfigError
from producers.sim.ipv6 import ROUTER, SCAN_PORT, SCANNER, VICTIMS
from producers.sim.simulate import simulate_quarter
from producers.sim.space import SensorSpace
from schemas.batch import PacketBatch

V4 = "198.51.100.0/24"
V6 = "2001:db8:dd::/120"


def _run(prefix: list[str]) -> tuple[PacketBatch, dict[str, Any]]:
    sim = simulate_quarter("2022Q2", packets_per_day=2000, prefix=prefix, days=3, seed=2, batch_size=700)
    batch = PacketBatch.concat(list(sim), "x", 0)
    return batch, sim.ground_truth().to_dict()


def _addr(raw: np.void) -> str:
    return str(ipaddress.IPv6Address(bytes(raw.tobytes())))


def test_ipv6_traffic_is_planted_beside_an_unchanged_modelled_quarter() -> None:
    plain, plain_truth = _run([V4])
    both, truth = _run([V4, V6])
    assert not (plain["ip_version"] == 6).any()
    v6 = both["ip_version"] == 6
    assert int(v6.sum()) == truth["ipv6"]["packets"] > 0
    assert len(both) == len(plain) + int(v6.sum())
    assert bool((np.diff(both["ts"]) >= 0).all())
    for key in ("daily", "totals", "top5", "sources"):
        assert truth[key] == plain_truth[key], key
    net = ipaddress.IPv6Network(V6)
    assert all(ipaddress.IPv6Address(_addr(a)) in net for a in both["dst6"][v6])
    assert (both["total_length"] == both["caplen"]).all() and (both["truncated"] == 0).all()


def test_each_day_has_one_ipv6_episode_above_corsaros_thresholds_and_a_scan() -> None:
    batch, truth = _run([V4, V6])
    victims = [v for v in truth["backscatter"]["victims"] if ":" in v["victim"]]
    assert sorted(v["victim"] for v in victims) == sorted(VICTIMS)
    for v in victims:
        for ep in v["episodes"]:
            assert ep["packets"] >= 25 and ep["seconds"] > 60 and ep["packets"] / ep["seconds"] * 60 >= 30
    v6 = np.flatnonzero(batch["ip_version"] == 6)
    icmp6 = v6[batch["protocol"][v6] == 58]
    quoted = {_addr(a) for a in batch["inner_dst6"][icmp6]}
    assert quoted <= set(VICTIMS) and len(quoted) == 2
    assert {_addr(a) for a in batch["src6"][icmp6]} >= {ROUTER}
    scan = v6[(batch["dport"][v6] == SCAN_PORT) & (batch["tcp_flags"][v6] == 2)]
    assert {_addr(a) for a in batch["src6"][scan]} == {SCANNER}
    assert len(scan) == truth["ipv6"]["scan"]["packets"]


def test_a_sensor_needs_an_ipv4_prefix() -> None:
    with pytest.raises(ConfigError):
        SensorSpace([V6])
