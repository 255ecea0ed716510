"""IPv6 traffic planted at a sensor that monitors IPv6 space: DoS backscatter from IPv6 victims
and an IPv6 SYN scan, so that the pipeline's IPv6 paths (quoted IPv6 headers, IPv6 victims in
episodes, alerts and the report) are exercised by every simulation with an IPv6 prefix.

The modelled quarter (the JPCERT/CC report's ports and regions) is IPv4: these packets are
planted beside it, never counted in its daily figures; the ground truth lists them apart
(``ipv6`` and the IPv6 victims among ``backscatter.victims``). Every day one victim, in turn,
answers spoofed packets for four minutes at 50 a minute (above corsaro's thresholds: >= 25
packets, > 60 s, >= 30 a minute), in one of three ways: TCP SYN-ACKs, ICMPv6 port
unreachable quoting the spoofed UDP datagram (from the victim), and ICMPv6 time exceeded
quoting the spoofed TCP SYN (from a router on the way, so the victim is the quote's
destination). Addresses are from the documentation prefix 2001:db8::/32 (RFC 3849).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from producers.sim.model import TCP, UDP
from producers.sim.packets import ACK, MSS_ONLY, SYN, Episode, empty_columns

__all__ = ["ICMP6", "SCAN_PORT", "SCANNER", "VICTIMS", "Ipv6Day", "plant_ipv6_day"]

Array = npt.NDArray[Any]
Columns = dict[str, Array]

ICMP6 = 58
VICTIMS = ("2001:db8:a11::80", "2001:db8:b22::53", "2001:db8:c33::443")
ROUTER = "2001:db8:f00::1"
SCANNER = "2001:db8:5ca::1"
SCAN_PORT = 22
SCAN_PACKETS = 60  # a day, spread over the day
EPISODE_PACKETS = 200
EPISODE_NS = 240 * 10**9
_HOUR_NS = 3600 * 10**9
# (response, protocol, service port) of each day's episode, in turn
_KINDS = (("syn-ack", "tcp", 443), ("unreachable", "icmp", 53), ("time-exceeded", "icmp", 80))


@dataclass(frozen=True, eq=False)
class Ipv6Day:
    """One day of planted IPv6 packets (time order), its episode and its scan probes."""

    columns: Columns
    episodes: list[Episode]
    scan_packets: int


def _v16(address: str, n: int) -> Array:
    return np.frombuffer(ipaddress.IPv6Address(address).packed * n, dtype="V16").copy()


def _ipv6_columns(n: int) -> Columns:
    cols = empty_columns(n)
    cols["ip_version"][:] = 6
    return cols


def _episode(
    rng: np.random.Generator, index: int, day_start_ns: int, pick6: Callable[[int], Array]
) -> tuple[Columns, Episode]:
    n = EPISODE_PACKETS
    response, proto, port = _KINDS[index % len(_KINDS)]
    victim = VICTIMS[index % len(VICTIMS)]
    start = day_start_ns + (2 + index % 20) * _HOUR_NS  # away from midnight and other episodes
    cols = _ipv6_columns(n)
    cols["ts"][:] = start + np.sort(rng.integers(0, EPISODE_NS + 1, size=n))
    cols["ts"][0], cols["ts"][-1] = start, start + EPISODE_NS
    darknet = pick6(n)  # the addresses the attacker spoofed
    cols["dst6"][:] = darknet
    reporter = victim
    if response == "syn-ack":
        cols["protocol"][:] = TCP
        cols["sport"][:] = port
        cols["dport"][:] = rng.integers(1024, 65536, size=n)
        cols["tcp_flags"][:] = SYN | ACK
        cols["tcp_seq"][:] = rng.integers(0, 1 << 32, size=n, dtype=np.uint64)
        cols["tcp_ack"][:] = rng.integers(1, 1 << 32, size=n, dtype=np.uint64)
        cols["tcp_window"][:] = 64800
        cols["tcp_opt_len"][:], cols["tcp_opt_kinds"][:], cols["tcp_mss"][:] = 4, MSS_ONLY, 1440
        cols["ttl"][:] = 52
        length = 40 + 24
    else:
        cols["protocol"][:] = ICMP6
        quoted_tcp = response == "time-exceeded"
        if quoted_tcp:
            reporter = ROUTER
        cols["icmp_type"][:] = 3 if quoted_tcp else 1  # time exceeded / destination unreachable
        cols["icmp_code"][:] = 0 if quoted_tcp else 4  # hop limit / port unreachable
        cols["inner_protocol"][:] = TCP if quoted_tcp else UDP
        cols["inner_src6"][:] = darknet
        cols["inner_dst6"][:] = _v16(victim, n)
        cols["inner_sport"][:] = rng.integers(1024, 65536, size=n)
        cols["inner_dport"][:] = port
        cols["ttl"][:] = 58
        length = 40 + 8 + 40 + 8  # ICMPv6 header, the quoted IPv6 header and 8 bytes of L4
    cols["src6"][:] = _v16(reporter, n)
    cols["total_length"][:] = cols["caplen"][:] = length
    cols["length"][:] = length
    ep = Episode(
        int(ipaddress.IPv6Address(victim)),
        int(ipaddress.IPv6Address(reporter)),
        "ZZ",
        proto,
        response,
        port,
        int(cols["ts"][0]),
        int(cols["ts"][-1]),
        n,
    )
    return cols, ep


def _scan(rng: np.random.Generator, day_start_ns: int, pick6: Callable[[int], Array]) -> Columns:
    n = SCAN_PACKETS
    cols = _ipv6_columns(n)
    cols["ts"][:] = np.sort(day_start_ns + rng.integers(0, 86_400 * 10**9, size=n))
    cols["src6"][:] = _v16(SCANNER, n)
    cols["dst6"][:] = pick6(n)
    cols["protocol"][:] = TCP
    cols["sport"][:] = rng.integers(32768, 61000, size=n)
    cols["dport"][:] = SCAN_PORT
    cols["tcp_flags"][:] = SYN
    cols["tcp_seq"][:] = rng.integers(0, 1 << 32, size=n, dtype=np.uint64)
    cols["tcp_window"][:] = 64800
    cols["tcp_opt_len"][:], cols["tcp_opt_kinds"][:], cols["tcp_mss"][:] = 4, MSS_ONLY, 1440
    cols["ttl"][:] = 51
    cols["total_length"][:] = cols["caplen"][:] = cols["length"][:] = 64
    return cols


def plant_ipv6_day(
    rng: np.random.Generator, index: int, day_start_ns: int, pick6: Callable[[int], Array]
) -> Ipv6Day:
    """Day ``index``'s IPv6 backscatter episode and scan probes, to darknet addresses ``pick6``
    draws."""
    episode, ep = _episode(rng, index, day_start_ns, pick6)
    scan = _scan(rng, day_start_ns, pick6)
    merged = {k: np.concatenate([episode[k], scan[k]]) for k in episode}
    order = np.argsort(merged["ts"], kind="stable")
    return Ipv6Day({k: v[order] for k, v in merged.items()}, [ep], len(scan["ts"]))
