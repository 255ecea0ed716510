"""Replay points and what a new owner reads back from the table (streams.takeover)."""

from __future__ import annotations

import orjson

from schemas.windowrows import NEVER
from streams.takeover import ReplayPoint, decode_replay_point, published_until, replay_key
from streams.windows import ClosedWindow
from streams.windowstore import MinuteBundles, window_key

H = 1_648_771_200  # 2022-04-01 00:00 UTC


def test_replay_point_moves_by_whole_hours_and_keeps_the_oldest_unfinished_offset() -> None:
    point = ReplayPoint(partition=3)
    point.record(10, H + 600)
    point.record(11, H + 3600 + 60)
    point.record(12, None)  # an idle marker
    point.record(13, H + 1200)  # behind a newer one: it waits
    first = point.advance(H + 3599)  # nothing is final yet: everything is to re-read
    assert orjson.loads(first or b"") == {"final_before": H, "partition": 3, "offset": 10}
    assert point.advance(H + 3599) is None  # same hour boundary: nothing to write
    value = point.advance(H + 3600 + 1800)
    assert orjson.loads(value or b"") == {"final_before": H + 3600, "partition": 3, "offset": 11}
    last = point.advance(H + 7200)
    assert orjson.loads(last or b"") == {"final_before": H + 7200, "partition": 3, "offset": 14}


def test_a_replay_point_of_another_partition_means_read_everything() -> None:
    value = b'{"final_before": 7200, "partition": 2, "offset": 40}'
    assert decode_replay_point(value, 2) == (7200, 40)
    assert decode_replay_point(value, 5) == (NEVER, 0)
    assert decode_replay_point(None, 0) == (NEVER, 0)


def test_first_time_per_packets_partition() -> None:
    point = ReplayPoint(partition=0)
    assert point.first_time(0, 5) and point.first_time(1, 2) and point.first_time(0, 6)
    assert not point.first_time(0, 6) and not point.first_time(0, 3) and not point.first_time(1, 2)
    assert point.first_time(-1, -1) and point.first_time(-1, -1)  # no batch behind it


def test_published_until_reads_the_newest_hour_and_minute() -> None:
    bundles = MinuteBundles()
    table = dict(
        bundles.writes(
            [
                ClosedWindow.of("port", "1m", H + 60, {"23/tcp": (1, 1)}),
                ClosedWindow.of("port", "1m", H + 3600 + 120, {"23/tcp": (1, 1)}),
                ClosedWindow.of("port", "1h", H, {"23/tcp": (1, 1)}),
                ClosedWindow.of("region", "1h", H + 7200, {"CN": (1, 1)}),
            ]
        )
    )
    table[replay_key("port")] = b'{"final_before": 0, "partition": 0, "offset": 0}'
    assert published_until(table, "port") == {"1m": H + 3600 + 120, "1h": H}
    assert published_until(table, "sensor") == {"1m": NEVER, "1h": NEVER}


def test_minutes_rewritten_by_a_new_owner_keep_those_the_table_has() -> None:
    table = dict(MinuteBundles().writes([ClosedWindow.of("port", "1m", H, {"23/tcp": (4, 2)})]))
    (write,) = MinuteBundles(table.get).writes([ClosedWindow.of("port", "1m", H + 60, {"80/tcp": (1, 1)})])
    assert write[0] == window_key("port", "1m", H)
    assert [(m["start"], m["packets"]) for m in orjson.loads(write[1])["minutes"]] == [
        (H, [4]),
        (H + 60, [1]),
    ]
