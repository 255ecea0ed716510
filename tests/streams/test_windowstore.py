"""Closed windows as table writes: hours alone, an hour's minutes under one key."""

from __future__ import annotations

import numpy as np
import orjson

from streams.windows import ClosedWindow
from streams.windowstore import MinuteBundles, window_key, window_value

H = 1_648_771_200  # 2022-04-01 00:00 UTC


def minute(start: int, counts: dict[str, tuple[int, int]], revision: int = 0) -> ClosedWindow:
    return ClosedWindow.of("port", "1m", start, counts, revision)


def test_hour_window_is_one_key_with_its_columns() -> None:
    w = ClosedWindow("region", "1h", H, ["CN", "US"], np.array([5, 7]), np.array([2, 3]))
    ((key, value),) = MinuteBundles().writes([w])
    assert key == window_key("region", "1h", H) == f"region|1h|{H}".encode()
    assert value == window_value(w)
    assert orjson.loads(value) == {
        "kind": "region",
        "size": "1h",
        "start": H,
        "revision": 0,
        "values": ["CN", "US"],
        "packets": [5, 7],
        "sources": [2, 3],
    }


def test_minutes_of_one_hour_share_a_key_that_accumulates_them_in_order() -> None:
    bundles = MinuteBundles()
    first = bundles.writes([minute(H + 120, {"23/tcp": (4, 2)}), minute(H, {"80/tcp": (1, 1)})])
    assert [k for k, _ in first] == [window_key("port", "1m", H)]
    later = bundles.writes([minute(H + 60, {"22/tcp": (3, 3)}), minute(H + 3600, {"23/tcp": (9, 9)})])
    assert [k for k, _ in later] == [window_key("port", "1m", H), window_key("port", "1m", H + 3600)]
    hour = orjson.loads(later[0][1])
    assert (hour["kind"], hour["size"], hour["start"]) == ("port", "1m", H)
    assert [m["start"] for m in hour["minutes"]] == [H, H + 60, H + 120]
    assert hour["minutes"][2] == {
        "start": H + 120,
        "revision": 0,
        "values": ["23/tcp"],
        "packets": [4],
        "sources": [2],
    }


def test_a_corrected_minute_replaces_the_first_version_in_its_hour() -> None:
    bundles = MinuteBundles()
    bundles.writes([minute(H, {"23/tcp": (4, 2)})])
    ((_, value),) = bundles.writes([minute(H, {"23/tcp": (6, 3)}, revision=1)])
    (only,) = orjson.loads(value)["minutes"]
    assert (only["revision"], only["packets"], only["sources"]) == (1, [6], [3])


def test_hours_past_the_horizon_are_forgotten_and_start_afresh() -> None:
    bundles = MinuteBundles()
    bundles.writes([minute(H, {"23/tcp": (1, 1)}), minute(H + 3600, {"23/tcp": (1, 1)})])
    assert len(bundles) == 2
    bundles.forget("port", H + 3600)
    assert len(bundles) == 1
    ((_, value),) = bundles.writes([minute(H + 60, {"80/tcp": (2, 2)})])
    assert [m["start"] for m in orjson.loads(value)["minutes"]] == [H + 60]
