"""``sources_daily`` and the scan events, filled by the store's views as packets are inserted."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sinks.scans import scan_events
from sinks.sources import port_name
from sinks.store import Store
from tests.sinks.packets import Pkt, insert_packets

T0 = datetime(2022, 4, 1, 10, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(f"chdb://{tmp_path / 'store'}") as s:
        s.migrate()
        yield s


def test_port_keys_read_as_port_and_protocol() -> None:
    assert [port_name(k) for k in (6 * 65536 + 23, 17 * 65536 + 53, 1 * 65536)] == [
        "23/tcp",
        "53/udp",
        "icmp",
    ]


def test_a_source_row_holds_its_day_and_a_retried_insert_adds_nothing(store: Store) -> None:
    packets = [
        Pkt(T0 + timedelta(minutes=i), "1.2.3.4", dst=f"198.51.100.{i % 5}", dport=23 if i % 3 else 2323)
        for i in range(30)
    ]
    insert_packets(store, packets, "group-1")
    insert_packets(store, packets, "group-1")  # a replayed group: dropped in every view
    rows = store.query(
        "SELECT toString(source), packets, destinations, ports, dst_ports, first_seen, last_seen "
        "FROM daily_sources"
    ).result_rows
    (source, n, destinations, ports, top, first, last) = rows[0]
    assert len(rows) == 1
    assert (source, n, destinations, ports) == ("::ffff:1.2.3.4", 30, 5, 2)
    assert {port_name(k) for k in top} == {"23/tcp", "2323/tcp"}
    assert (first, last) == (T0.replace(tzinfo=None), (T0 + timedelta(minutes=29)).replace(tzinfo=None))


def test_a_scan_ends_after_a_silence_longer_than_the_idle_timeout(store: Store) -> None:
    burst = [T0 + timedelta(seconds=10 * i) for i in range(12)]  # two minutes
    later = [burst[-1] + timedelta(seconds=700) + timedelta(seconds=10 * i) for i in range(6)]
    insert_packets(store, [Pkt(ts, "1.2.3.4") for ts in burst + later])
    insert_packets(store, [Pkt(T0, "5.6.7.8", protocol=17, dport=53)])
    day = (T0.replace(hour=0), T0.replace(hour=0) + timedelta(days=1))
    short = [e for e in scan_events(store, 600, *day) if e.source == "1.2.3.4"]
    assert [(e.start, e.end, e.packets) for e in short] == [
        (burst[0], burst[-1], 12),
        (later[0], later[-1], 6),
    ]
    assert [e.open for e in short] == [False, True]  # the newest data is within the timeout of the second
    (long,) = [e for e in scan_events(store, 900, *day) if e.source == "1.2.3.4"]
    assert long.packets == 18
    other = [e for e in scan_events(store, 600, *day) if e.source == "5.6.7.8"]
    assert [(e.protocol, e.packets, e.ports) for e in other] == [(17, 1, 1)]
    assert scan_events(store, 600, day[1], day[1] + timedelta(days=1)) == []
