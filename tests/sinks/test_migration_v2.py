"""Schema step 7 (PacketBatch version 2) on a store written by the previous version: every row
kept, every old value carried over (widened, mapped or moved), and new rows insertable."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from schemas.batch import PacketBatch
from schemas.fingerprints import Fingerprint
from sinks.arrow import EnrichedColumns
from sinks.schema import MIGRATIONS, SCHEMA_MIGRATIONS
from sinks.store import Store

ROWS = 20_000
_BACKSCATTER = int(Fingerprint.BACKSCATTER)

# Rows as the previous version stored them: IPv4 and IPv6, backscatter (SYN-ACK and ICMP
# errors quoting a datagram) and scans, the reserved bit set in some ip_flags, every length.
_OLD_ROWS = f"""
INSERT INTO packets (ts, sensor, batch_seq, ip_version, src, dst, src6, dst6, protocol, sport,
    dport, tcp_flags, ip_flags, length, icmp_type, inner_protocol, inner_src, inner_dst, region,
    fp_flags, source_topic, source_partition, source_offset)
SELECT toDateTime64('2022-04-01 00:00:00', 9, 'UTC') + toIntervalSecond(number * 7),
    if(number % 3 = 0, 'old-a', 'old-b'), intDiv(number, 500), if(number % 10 = 9, 6, 4),
    if(number % 10 = 9, toIPv4(0), toIPv4(167772160 + number % 4000)),
    if(number % 10 = 9, toIPv4(0), toIPv4(3325256704 + number % 256)),
    if(number % 10 = 9, toIPv6(concat('2001:db8::', toString(number % 50 + 1))), toIPv6('::')),
    toIPv6('::'),
    multiIf(number % 5 = 0, 1, number % 20 = 9, 58, 6), number % 60000, 23 + number % 5,
    if(number % 4 = 1, 18, 2), multiIf(number % 97 = 0, 6, number % 2 = 0, 2, 0),
    20 + number % 65000, multiIf(number % 5 = 0, 3, number % 20 = 9, 1, 0),
    if(number % 5 = 0 OR number % 20 = 9, 17, 0),
    toIPv4(3325256704 + number % 256), toIPv4(3405803776 + number % 100), 'US',
    if(number % 4 = 1 OR number % 5 = 0 OR number % 10 = 9, {_BACKSCATTER}, 1), 'test.enriched', 0,
    intDiv(number, 500)
FROM numbers({ROWS})
"""

_KEPT = (
    "ts, sensor, batch_seq, ip_version, toString(src), toString(dst), toString(src6), protocol, "
    "sport, dport, tcp_flags, icmp_type, inner_protocol, toString(inner_src), toString(inner_dst), "
    "region, fp_flags, toString(source), day, source_offset"
)


def _previous_version(path: Path) -> Store:
    store = Store.open(f"chdb://{path}")
    store.client.command(SCHEMA_MIGRATIONS)
    for step in MIGRATIONS:
        if step.version >= 7:
            break
        for statement in step.statements:
            store.client.command(statement)
        store.client.insert(
            "schema_migrations",
            [[step.version, step.name, datetime.now(tz=UTC)]],
            column_names=["version", "name", "applied_at"],
        )
    return store


def _rows(store: Store, columns: str) -> list[tuple[Any, ...]]:
    return list(store.query(f"SELECT {columns} FROM packets ORDER BY ts, sensor").result_rows)


def test_step_7_keeps_every_row_of_a_store_written_by_the_previous_version(tmp_path: Path) -> None:
    with _previous_version(tmp_path / "store") as store:
        assert store.version() == 6
        store.client.command(_OLD_ROWS)
        kept = _rows(store, _KEPT)
        old = _rows(
            store,
            "ip_flags, length, toString(victim), ip_version = 6, protocol, toString(src6)",
        )
        rollup = store.query("SELECT sum(packets) FROM rollup_port_day").result_rows
        assert len(kept) == ROWS and sum(1 for f, *_ in old if f & 4) > 0

        assert store.migrate() == 7

        assert _rows(store, _KEPT) == kept
        new = _rows(store, "ip_flags, ip_reserved, length, toString(victim), caplen, truncated")
        recovered = 0
        for (flags, length, victim, v6, proto, src6), (
            nflags,
            reserved,
            nlength,
            nvictim,
            caplen,
            cut,
        ) in zip(old, new, strict=True):
            # The reserved bit is IPv4's; an IPv6 row's ip_flags (fragment header M) stay.
            assert (nflags, reserved) == ((flags, 0) if v6 else (flags & 3, flags >> 2 & 1))
            assert nlength == length
            assert (caplen, cut) == (0, 0)  # not known for rows of the previous version
            if v6 and proto == 6:  # an IPv6 reply version 1 stored with victim 0.0.0.0: its source
                assert (victim, nvictim) == ("0.0.0.0", src6)
                recovered += 1
            else:  # IPv4 victims mapped, as `source` holds them; an ICMPv6 error's stays unknown
                assert nvictim == f"::ffff:{victim}"
        assert recovered > 0
        assert store.query("SELECT sum(packets) FROM rollup_port_day").result_rows == rollup
        types = dict(store.query("SELECT name, type FROM system.columns WHERE table = 'packets'").result_rows)
        assert (types["length"], types["victim"], types["inner_dst6"]) == ("UInt32", "IPv6", "IPv6")

        # Applied once: a second migrate changes nothing.
        assert store.migrate() == 7
        assert _rows(store, "ip_flags, ip_reserved, length, toString(victim), caplen, truncated") == new


def test_a_migrated_store_takes_version_2_rows_with_ipv6_victims_and_jumbo_lengths(tmp_path: Path) -> None:
    with _previous_version(tmp_path / "store") as store:
        store.client.command(_OLD_ROWS)
        store.migrate()
        b = PacketBatch.zeros("new", 0, 2)
        c = b.columns
        c["ts"][:] = 1_648_771_200 * 10**9
        c["ip_version"][:] = 6
        c["src6"][:] = np.frombuffer(ipaddress.IPv6Address("2001:db8:1::1").packed, "V16")[0]
        c["protocol"][:], c["icmp_type"][:], c["inner_protocol"][:] = 58, 1, 17
        c["inner_dst6"][0] = np.frombuffer(ipaddress.IPv6Address("2001:db8:beef::80").packed, "V16")[0]
        c["total_length"][:], c["length"][:], c["caplen"][:], c["truncated"][:] = 100_040, 65535, 96, 4
        cols = EnrichedColumns(
            b, "t", 0, 99, "", "", ["ZZ"], ["Unknown"], np.zeros(2, np.uint16), np.zeros(2, np.uint32),
            [""], np.zeros(2, np.uint16), ["icmpv6"], np.zeros(2, np.uint16),
            np.array([_BACKSCATTER, 0], np.uint16), np.zeros(2, np.uint16),
        )  # fmt: skip
        store.insert_enriched(cols, dedup_token="v2")
        rows = store.query(
            "SELECT toString(victim), length, caplen, truncated FROM packets "
            "WHERE sensor = 'new' ORDER BY victim"
        ).result_rows
        assert rows == [("::ffff:0.0.0.0", 100_040, 96, 4), ("2001:db8:beef::80", 100_040, 96, 4)]
        assert store.query("SELECT count() FROM packets").result_rows == [(ROWS + 2,)]
