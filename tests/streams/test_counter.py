"""The count agent's logic without Faust: a kind taken over mid-stream by a new owner (from the
replay point in the table) ends with the same table as one owner that saw everything; repeats
of packet batches count once; no alert is raised twice."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from darkscope.settings import WorkerSettings
from streams.counter import IDLE, Counter
from streams.counts import ClosedWindow, aggregate
from streams.enrich import PartialFrame
from streams.takeover import NEVER, ReplayPoint, published_until, replay_key
from streams.windowstore import MinuteBundles, window_key

H = 1_648_771_200  # 2022-04-01 00:00 UTC
SOURCES = 2  # packets partitions
SETTINGS = WorkerSettings(retention=3 * 3600, lateness=60, alert_min_history=2, alert_min_packets=20)


def _stream(batches: int = 120, hours: int = 12, seed: int = 5) -> list[PartialFrame]:
    """Port partials of ``batches`` packet batches from two packets partitions, in time order,
    with a surge of 445/tcp in hour 8; then an idle marker per packets partition."""
    rng = np.random.default_rng(seed)
    values = ["23/tcp", "80/tcp", "445/tcp", "22/tcp"]
    span = hours * 3600 // batches
    out = []
    for i in range(batches):
        n = 200
        ts = np.sort(rng.integers(i * span, (i + 1) * span, n)) + H
        codes = rng.choice(4, n, p=[0.5, 0.3, 0.05, 0.15])
        if 8 * 3600 <= i * span < 9 * 3600:
            codes[: n // 2] = 2
        addrs = rng.integers(0, 400, n).astype(np.uint64)
        partial = aggregate("port", ts.astype(np.int64) * 10**9, codes, values, addrs)
        out.append(PartialFrame(partial, i % SOURCES, int(ts.max()) * 10**9, i // SOURCES))
    empty = aggregate("port", np.zeros(0, np.int64), np.zeros(0, np.int64), [], np.zeros(0, np.uint64))
    out += [PartialFrame(empty, p, IDLE, -1) for p in range(SOURCES)]
    return out


def _run(counter: Counter, frames: list[tuple[int, PartialFrame]]) -> list[str]:
    ids = []
    for offset, frame in frames:
        if not counter.owns("port"):
            final_before, start = counter.replay_start("port", 0)
            assert start == 0 and final_before == NEVER
            counter.take_over("port", 0, final_before, start, [])
        ids += [a["alert_id"] for a in counter.count("port", frame, offset).alerts]
    return ids


def _windows(table: dict[bytes, bytes]) -> dict[bytes, bytes]:
    return {k: v for k, v in table.items() if k != replay_key("port")}


@pytest.fixture(scope="module")
def reference() -> tuple[dict[bytes, bytes], list[str]]:
    """One owner counts the whole stream."""
    table: dict[bytes, bytes] = {}
    ids = _run(Counter(SETTINGS, SOURCES, table), list(enumerate(_stream())))
    return table, ids


def test_reference_counts_every_packet_and_alerts_on_the_surge(
    reference: tuple[dict[bytes, bytes], list[str]],
) -> None:
    table, ids = reference
    hours = [orjson.loads(v) for k, v in table.items() if k.startswith(b"port|1h|")]
    assert len(hours) == 12
    assert sum(sum(h["packets"]) for h in hours) == 120 * 200
    minutes = [m for k, v in table.items() if k.startswith(b"port|1m|") for m in orjson.loads(v)["minutes"]]
    assert sum(sum(m["packets"]) for m in minutes) == 120 * 200
    assert any("445/tcp" in i for i in ids), ids
    point = orjson.loads(table[replay_key("port")])
    assert point["final_before"] % 3600 == 0 and point["final_before"] > H


@pytest.mark.parametrize("cut", [1, 30, 61, 97, 119])
def test_a_new_owner_from_the_replay_point_ends_with_the_same_table(
    reference: tuple[dict[bytes, bytes], list[str]], cut: int
) -> None:
    frames = _stream()
    table: dict[bytes, bytes] = {}
    old = Counter(SETTINGS, SOURCES, table)
    ids = _run(old, list(enumerate(frames[:cut])))
    # The partition moves: the new owner has the table (restored from its changelog) and the
    # counts partition, and nothing of the old owner's memory.
    new = Counter(SETTINGS, SOURCES, table)
    final_before, start = new.replay_start("port", 0)
    if cut > 60:
        assert final_before > H and 0 < start < cut  # it re-reads a part, not everything
    took = new.take_over("port", 0, final_before, start, [(o, frames[o]) for o in range(start, cut)])
    assert took.replayed == cut - start
    # The packets partitions moved too, before their last three batches were committed: the
    # new owner of those enriches them again, and their partials come a second time.
    repeats = frames[max(cut - 3, 0) : cut]
    rest = [(cut + i, f) for i, f in enumerate(repeats + frames[cut:])]
    ids += _run(new, rest)
    assert new.repeats == len(repeats)
    ref_table, ref_ids = reference
    assert _windows(table) == _windows(ref_table)
    assert len(ids) == len(set(ids)), "an alert was raised twice"
    assert set(ids) <= set(ref_ids)


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
