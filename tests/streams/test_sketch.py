"""The one 64-bit mixer (splitmix64's finaliser) and the IPv6 address keys made with it."""

from __future__ import annotations

import ipaddress

import numpy as np

from schemas.batch import PacketBatch
from streams.combiner import shard_of
from streams.fingerprints import source_keys
from streams.sketch import ipv6_keys, mix64

GOLDEN = 0x9E3779B97F4A7C15


def v6(*addrs: str) -> np.ndarray:
    return np.frombuffer(b"".join(ipaddress.IPv6Address(a).packed for a in addrs), dtype="V16")


def test_mix64_gives_the_splitmix64_reference_outputs_for_seed_zero() -> None:
    # Partial counts on the counts topic were routed by these values: they must never change.
    states = np.array([0, GOLDEN, (2 * GOLDEN) % 2**64], np.uint64)
    assert mix64(states).tolist() == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]


def test_shard_of_ipv4_addresses_is_unchanged() -> None:
    addrs = np.array([0x0A000001, 0xC0000201, 0xCB007107], np.uint64)
    assert shard_of(addrs, 8).tolist() == [6, 4, 0]


def test_ipv6_keys_tell_apart_addresses_the_old_folds_merged() -> None:
    # ::1 and ::81 differ only in the top bit of the last byte (lost to the IPv6 flag bit);
    # 0:1::2 and 0:2::1 have the same XOR of their halves.
    keys = ipv6_keys(v6("2001:db8::1", "2001:db8::81", "2001:db8:0:1::2", "2001:db8:0:2::1"))
    assert len(set(keys.tolist())) == 4


def test_ipv6_keys_have_the_top_bit_set_and_never_equal_an_ipv4_key() -> None:
    keys = ipv6_keys(v6("::", "::ffff:10.0.0.1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"))
    assert all(k >> 63 == 1 for k in keys.tolist())


def test_ipv6_keys_are_fixed() -> None:
    # Keys travel as PartialCounts pair_addr: a change is a deliberate wire change.
    assert ipv6_keys(v6("2001:db8::1")).tolist() == [0xD1A533B3CEADDFD2]


def test_source_keys_are_the_ipv4_address_or_the_ipv6_key() -> None:
    b = PacketBatch.zeros("s", 0, 2)
    b.columns["ip_version"][:] = [4, 6]
    b.columns["src"][0] = 0xC0000201
    b.columns["src6"][1] = v6("2001:db8::1")[0]
    assert source_keys(b).tolist() == [0xC0000201, 0xD1A533B3CEADDFD2]
