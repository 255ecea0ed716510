"""The sensor registry: the file's periods, checked; loads kept as history, the latest in force;
one row per sensor and day."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from core.errors import ConfigError
from sinks.registry import current_registry, group_condition, parse_registry, store_registry
from sinks.store import Store
from tests.sinks.packets import Pkt, insert_packets

TWO_PERIODS = """
[[sensor]]
id = "tokyo-1"
group = "japan"
country = "jp"
prefixes = ["198.51.100.0/24", "198.51.100.128/25"]
active_from = 2022-04-01
active_until = 2022-04-02

[[sensor]]
id = "tokyo-1"
group = "japan"
country = "JP"
prefixes = ["198.51.100.0/23"]
active_from = 2022-04-03
active_until = 2022-04-04
"""


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(f"chdb://{tmp_path / 'store'}") as s:
        s.migrate()
        yield s


def test_periods_parse_with_overlapping_prefixes_counted_once() -> None:
    first, second = parse_registry(TWO_PERIODS)
    assert (first.sensor, first.group, first.country) == ("tokyo-1", "japan", "JP")
    assert first.monitored_addresses == 256
    assert second.monitored_addresses == 512
    assert first.covers(date(2022, 4, 2)) and not first.covers(date(2022, 4, 3))


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('id = "a"\ngroup = "g"\nactive_from = 2022-04-01\nprefixes = ["not-a-prefix"]', "not a CIDR"),
        ('id = "a"\ngroup = "unregistered"\nactive_from = 2022-04-01', "reserved"),
        ('id = "a"\nactive_from = 2022-04-01', "group is missing"),
        ('id = "a"\ngroup = "g"\nactive_from = 2022-04-02\nactive_until = 2022-04-01', "before"),
        ('id = "a"\ngroup = "g"\nactive_from = 2022-04-01\ncolour = "red"', "unknown key"),
    ],
)
def test_a_bad_entry_is_refused_naming_it(entry: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        parse_registry(f"[[sensor]]\n{entry}\n", "sensors.toml")
    assert "sensors.toml: sensor #1" in str(err.value)


def test_overlapping_periods_of_one_sensor_are_refused() -> None:
    text = TWO_PERIODS.replace("active_until = 2022-04-02", "")
    with pytest.raises(ConfigError, match="overlapping periods"):
        parse_registry(text)


def test_a_new_load_is_in_force_and_the_old_one_is_kept(store: Store) -> None:
    store_registry(store, parse_registry(TWO_PERIODS), "v1", datetime(2026, 1, 1, tzinfo=UTC))
    moved = TWO_PERIODS.replace('group = "japan"', 'group = "partners"')
    store_registry(store, parse_registry(moved), "v2", datetime(2026, 2, 1, tzinfo=UTC))
    assert {p.group for p in current_registry(store)} == {"partners"}
    loads = store.query("SELECT source_file, count() FROM sensor_registry GROUP BY 1 ORDER BY 1").result_rows
    assert loads == [("v1", 2), ("v2", 2)]


def test_registry_days_give_each_day_of_a_period_its_addresses(store: Store) -> None:
    store_registry(store, parse_registry(TWO_PERIODS))
    rows = store.query(
        "SELECT day, sensor_group, monitored_addresses FROM registry_days ORDER BY day"
    ).result_rows
    assert rows == [
        (date(2022, 4, 1), "japan", 256),
        (date(2022, 4, 2), "japan", 256),
        (date(2022, 4, 3), "japan", 512),
        (date(2022, 4, 4), "japan", 512),
    ]


def test_a_packet_on_a_day_outside_every_period_counts_as_unregistered(store: Store) -> None:
    store_registry(store, parse_registry(TWO_PERIODS))
    days = [datetime(2022, 4, d, 12, tzinfo=UTC) for d in (1, 4, 5)]
    insert_packets(store, [Pkt(ts, "1.2.3.4", sensor="tokyo-1") for ts in days])
    insert_packets(store, [Pkt(days[0], "1.2.3.5", sensor="nobody")])
    rows = store.query(
        "SELECT day, sensor_group, packets, monitored_addresses FROM group_daily ORDER BY day, sensor_group"
    ).result_rows
    assert rows == [
        (date(2022, 4, 1), "japan", 1, 256),
        (date(2022, 4, 1), "unregistered", 1, 0),
        (date(2022, 4, 4), "japan", 1, 512),
        (date(2022, 4, 5), "unregistered", 1, 0),
    ]
    japan = store.query(
        f"SELECT count() FROM packets WHERE {group_condition('japan')}", {"sensor_group": "japan"}
    ).result_rows
    assert japan == [(2,)]
