"""The vectorised search-tree walk against maxminddb itself and against hand-built trees."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import maxminddb
import numpy as np
import pytest

from core.errors import ConfigError
from streams.geodb import default_city_db
from streams.mmdb_tree import SearchTree
from tests.streams.conftest import KNOWN_ADDRESSES, UNKNOWN_ADDRESSES


def _tree_of(path: Path) -> tuple[SearchTree, maxminddb.Reader]:
    reader = maxminddb.open_database(str(path), maxminddb.MODE_MMAP_EXT)
    meta = reader.metadata()
    return SearchTree(path, meta.node_count, meta.record_size, meta.ip_version), reader


def _agrees_with_maxminddb(tree: SearchTree, reader: maxminddb.Reader, addrs: list[int]) -> None:
    recs, plens = tree.lookup4(np.array(addrs, dtype=np.uint32))
    data_of: dict[int, object] = {}
    for ip, rec, plen in zip(addrs, recs.tolist(), plens.tolist(), strict=True):
        data, want_plen = reader.get_with_prefix_len(ipaddress.IPv4Address(ip))
        assert plen == want_plen, ipaddress.IPv4Address(ip)
        assert (rec == tree.node_count) == (data is None)
        # One record pointer, one record.
        assert data_of.setdefault(rec, data) == data


def test_walk_equals_maxminddb_on_the_dbip_city_database() -> None:
    tree, reader = _tree_of(default_city_db())
    assert tree.record_size == 28
    rng = np.random.default_rng(7)
    addrs = [0, 1, 0x7F000001, 0x0A000001, 0xC0A80101, 0xFFFFFFFF, *rng.integers(0, 2**32, 3000).tolist()]
    _agrees_with_maxminddb(tree, reader, addrs)


def test_walk_equals_maxminddb_on_a_small_database(city_mmdb: Path) -> None:
    tree, reader = _tree_of(city_mmdb)
    v4 = [a for a in KNOWN_ADDRESSES + UNKNOWN_ADDRESSES if ipaddress.ip_address(a).version == 4]
    rng = np.random.default_rng(3)
    _agrees_with_maxminddb(
        tree, reader, [int(ipaddress.IPv4Address(a)) for a in v4] + rng.integers(0, 2**32, 500).tolist()
    )


def _write_tree(path: Path, prefixes: dict[tuple[int, int], int], record_size: int) -> int:
    """An IPv4 search tree holding disjoint ``(network, length) -> data id``; returns node_count."""
    nodes: list[list[tuple[str, int] | None]] = [[None, None]]
    for (net, plen), data in prefixes.items():
        node = 0
        for depth in range(plen):
            bit = (net >> (31 - depth)) & 1
            if depth == plen - 1:
                nodes[node][bit] = ("data", data)
            else:
                child = nodes[node][bit]
                if child is None:
                    nodes.append([None, None])
                    child = nodes[node][bit] = ("node", len(nodes) - 1)
                node = child[1]
    count = len(nodes)

    def value(child: tuple[str, int] | None) -> int:
        if child is None:
            return count
        return child[1] if child[0] == "node" else count + 16 + child[1]

    out = bytearray()
    for left, right in nodes:
        lv, rv = value(left), value(right)
        if record_size == 24:
            out += lv.to_bytes(3, "big") + rv.to_bytes(3, "big")
        elif record_size == 32:
            out += lv.to_bytes(4, "big") + rv.to_bytes(4, "big")
        else:
            out += (lv & 0xFFFFFF).to_bytes(3, "big")
            out.append((lv >> 24) << 4 | (rv >> 24))
            out += (rv & 0xFFFFFF).to_bytes(3, "big")
    path.write_bytes(bytes(out) + bytes(16))
    return count


def _reference(prefixes: dict[tuple[int, int], int], ip: int) -> tuple[int | None, int]:
    for (net, plen), data in prefixes.items():
        if ip >> (32 - plen) == net >> (32 - plen):
            return data, plen
    return None, -1


@pytest.mark.parametrize("record_size", [24, 28, 32])
def test_walk_reads_every_record_size(tmp_path: Path, record_size: int) -> None:
    rng = np.random.default_rng(record_size)
    # Disjoint prefixes: one per distinct first byte, lengths 8..32; data ids large enough
    # to use the high nibble of 28-bit records (and the top byte of 24- and 32-bit ones).
    firsts = rng.choice(256, 60, replace=False).tolist()
    prefixes = {
        ((f << 24) | int(rng.integers(0, 2**24)), int(rng.integers(8, 33))): (1 << (record_size - 4)) + i
        for i, f in enumerate(firsts)
    }
    prefixes = {(net >> (32 - plen) << (32 - plen), plen): d for (net, plen), d in prefixes.items()}
    path = tmp_path / "tree.bin"
    count = _write_tree(path, prefixes, record_size)
    tree = SearchTree(path, count, record_size, ip_version=4)
    addrs = [net | int(rng.integers(0, 2 ** (32 - plen))) for net, plen in prefixes] + rng.integers(
        0, 2**32, 2000
    ).tolist()
    recs, plens = tree.lookup4(np.array(addrs, dtype=np.uint32))
    for ip, rec, plen in zip(addrs, recs.tolist(), plens.tolist(), strict=True):
        data, want = _reference(prefixes, ip)
        if data is None:
            assert rec == count
        else:
            assert (rec - count - 16, plen) == (data, want)


def test_record_size_other_than_24_28_32_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "tree.bin"
    path.write_bytes(bytes(64))
    with pytest.raises(ConfigError, match="record size"):
        SearchTree(path, 1, 20, ip_version=4)


def test_tree_larger_than_its_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "tree.bin"
    path.write_bytes(bytes(64))
    with pytest.raises(ConfigError, match="larger than the file"):
        SearchTree(path, 1000, 24, ip_version=4)
