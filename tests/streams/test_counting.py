"""The two counting stages through their encoded messages, without Kafka or Faust
(streams.local): partials routed by address over the counts partitions, windows counted per
partition and added up by the merge stage; takeovers at any point end with the same table."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import UndecodableMessage
from core.settings import WorkerSettings
from schemas.codec import Codec
from schemas.partials import PartialFrame, decode_frame, encode_frame
from schemas.windowcounts import (
    WindowCounts,
    decode_window_counts,
    encode_window_counts,
    window_counts_frames,
)
from streams.combiner import aggregate
from streams.local import LocalCounting
from streams.merge import WindowMerger
from streams.state import detector_of
from streams.windows import MINUTE, ValueIds, WindowRows

H = 1_648_771_200  # 2022-04-01 00:00 UTC
SOURCES = 2  # packets partitions
SETTINGS = WorkerSettings(retention=3 * 3600, lateness=60, alert_min_history=2, alert_min_packets=20)
VALUES = ["23/tcp", "80/tcp", "445/tcp", "22/tcp"]

Batch = tuple[int, int, np.ndarray, np.ndarray, np.ndarray, int]


def _batches(n: int = 120, hours: int = 12, seed: int = 5) -> list[Batch]:
    """``n`` batches from two packets partitions in time order: (partition, offset, ts ns,
    port codes, source addresses, watermark ns); 445/tcp surges in hour 8."""
    rng = np.random.default_rng(seed)
    span = hours * 3600 // n
    out: list[Batch] = []
    wm = [0, 0]
    for i in range(n):
        size = 300
        ts = np.sort(rng.integers(i * span, (i + 1) * span, size)) + H
        codes = rng.choice(4, size, p=[0.5, 0.3, 0.05, 0.15])
        if 8 * 3600 <= i * span < 9 * 3600:
            codes[: size // 2] = 2
        addrs = rng.integers(0, 2000, size).astype(np.uint64) + np.uint64(0x0A000000)
        p = i % SOURCES
        wm[p] = max(wm[p], int(ts.max()) * 10**9)
        out.append((p, i // SOURCES, ts.astype(np.int64) * 10**9, codes.astype(np.int64), addrs, wm[p]))
    return out


def _frames(b: Batch, shards: int) -> list[PartialFrame]:
    p, offset, ts, codes, addrs, wm = b
    port = aggregate("port", ts, codes, VALUES, addrs, shards)
    sensor = aggregate("sensor", ts, np.zeros(len(ts), np.int64), ["s1"], addrs, shards)
    return [PartialFrame((port[s], sensor[s]), p, wm, offset, s, shards) for s in range(shards)]


def _counting(shards: int) -> LocalCounting:
    return LocalCounting(SETTINGS, shards, SOURCES, detector_of(SETTINGS))


def _finish(lc: LocalCounting) -> LocalCounting:
    for p in range(SOURCES):
        lc.idle(p)
    lc.run()
    return lc


def _run(shards: int, partials: list[list[PartialFrame]]) -> LocalCounting:
    lc = _counting(shards)
    for frames in partials:
        lc.publish(frames)
        lc.run()
    return _finish(lc)


def _windows(table: dict[bytes, bytes]) -> dict[tuple[str, str, int], dict[str, tuple[int, int]]]:
    out = {}
    for key, value in table.items():
        parts = key.decode().split("|")
        if len(parts) != 3:
            continue  # replay points
        w = orjson.loads(value)
        for one in w["minutes"] if parts[1] == "1m" else [w]:
            out[(parts[0], parts[1], int(one["start"]))] = {
                v: (p, s) for v, p, s in zip(one["values"], one["packets"], one["sources"], strict=True)
            }
    return out


@pytest.fixture(scope="module")
def partials() -> list[list[PartialFrame]]:
    """The partials of ``_batches()`` over four counts partitions, one list per batch (read-only:
    publishing encodes them; built once for the tests that replay them)."""
    return [_frames(b, 4) for b in _batches()]


@pytest.fixture(scope="module")
def reference(partials: list[list[PartialFrame]]) -> tuple[dict[Any, Any], list[str]]:
    """One owner of everything, four counts partitions."""
    lc = _run(4, partials)
    return _windows(lc.table.written), [a["alert_id"] for a in lc.alerts]


def test_every_packet_is_counted_once_and_the_surge_alerts(
    reference: tuple[dict[Any, Any], list[str]],
) -> None:
    wins, ids = reference
    for size in ("1m", "1h"):
        assert (
            sum(p for (k, s, _), c in wins.items() if k == "sensor" and s == size for p, _ in c.values())
            == 120 * 300
        )
    assert len([k for k in wins if k[0] == "port" and k[1] == "1h"]) == 12
    assert any("445/tcp" in i for i in ids), ids


def test_minute_windows_do_not_depend_on_the_partition_count(
    reference: tuple[dict[Any, Any], list[str]],
) -> None:
    one = _windows(_run(1, [_frames(b, 1) for b in _batches()]).table.written)
    wins, _ = reference
    assert set(one) == set(wins)
    for key, counts in one.items():
        if key[1] == "1m":
            assert counts == wins[key], key  # exact packets and unique sources
        else:
            assert {v: p for v, (p, _) in counts.items()} == {v: p for v, (p, _) in wins[key].items()}
            for v, (_, s) in counts.items():  # sums of HyperLogLog estimates of disjoint sets
                assert abs(wins[key][v][1] - s) <= max(3, 0.05 * s), (key, v)


def test_a_close_sent_in_many_small_messages_publishes_the_same(
    reference: tuple[dict[Any, Any], list[str]], partials: list[list[PartialFrame]]
) -> None:
    lc = _counting(4)
    lc.max_rows = 5  # every close of a replayed batch is split
    for frames in partials:
        lc.publish(frames)
        lc.run()
    _finish(lc)
    wins, ids = reference
    assert max(len(log) for log in lc.windows_log) > 200
    assert _windows(lc.table.written) == wins
    assert [a["alert_id"] for a in lc.alerts] == ids
    assert sum(m.corrections for m in lc.mergers.values()) == 0  # nothing published early


@pytest.mark.parametrize("shards", [8, 16])
def test_every_counts_partition_carries_a_similar_share_with_one_sensor(shards: int) -> None:
    """One sensor and one dominant port: keyed by value they would all land on one partition."""
    rng = np.random.default_rng(1)
    n = 200_000
    ts = (H + np.sort(rng.integers(0, 3600, n))).astype(np.int64) * 10**9
    addrs = rng.integers(0, 2**32, 40_000, dtype=np.uint64)[rng.zipf(1.3, n) % 40_000]
    codes = np.where(rng.random(n) < 0.6, 0, rng.integers(0, 4, n)).astype(np.int64)
    per = [p.total_packets for p in aggregate("sensor", ts, np.zeros(n, np.int64), ["only"], addrs, shards)]
    rows = [len(p.pair_addr) for p in aggregate("port", ts, codes, VALUES, addrs, shards)]
    assert sum(per) == n
    assert min(rows) > 0 and max(rows) / np.mean(rows) <= 1.5, rows


@given(st.integers(0, 2**32 - 1), st.integers(1, 9), st.integers(1, 3000))
@settings(max_examples=40, deadline=None)
def test_the_partitions_partials_add_up_to_the_whole(seed: int, shards: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    ts = (H + rng.integers(0, 7200, n)).astype(np.int64) * 10**9
    codes = rng.integers(0, 4, n).astype(np.int64)
    addrs = rng.integers(0, 500, n).astype(np.uint64) | np.uint64(rng.integers(0, 2) << 63)
    (whole,) = aggregate("port", ts, codes, VALUES, addrs)
    parts = aggregate("port", ts, codes, VALUES, addrs, shards)

    def rows(ps: list[Any]) -> tuple[dict[tuple[int, str], int], set[tuple[int, str, int]]]:
        packets: dict[tuple[int, str], int] = {}
        triples = set()
        for p in ps:
            for m, v, c in zip(p.minute.tolist(), p.value_idx.tolist(), p.packets.tolist(), strict=True):
                packets[(m, p.values[v])] = packets.get((m, p.values[v]), 0) + c
            for m, v, a in zip(
                p.pair_minute.tolist(), p.pair_value_idx.tolist(), p.pair_addr.tolist(), strict=True
            ):
                assert (m, p.values[v], a) not in triples  # an address lives in one partition
                triples.add((m, p.values[v], a))
        return packets, triples

    assert rows(parts) == rows([whole])


@pytest.mark.parametrize("cut", [1, 30, 61, 97, 119])
@pytest.mark.parametrize("moved", ["counts", "windows", "both"])
def test_a_new_owner_from_the_replay_points_ends_with_the_same_table(
    reference: tuple[dict[Any, Any], list[str]], partials: list[list[PartialFrame]], cut: int, moved: str
) -> None:
    lc = _counting(4)
    for frames in partials[:cut]:
        lc.publish(frames)
        lc.run()
    # The partitions move: the new owners have the table (restored from its changelog) and
    # the topics, and nothing of the old owners' memory.
    before = len(lc.takeovers)
    if moved in ("counts", "both"):
        for shard in range(4):
            lc.move_counts(shard)
    if moved in ("windows", "both"):
        for kind in ("port", "sensor"):
            lc.move_kind(kind)
    # The packets partitions moved too, before their last three batches were committed: their
    # new owner enriches them again, and their partials come a second time.
    for frames in partials[max(cut - 3, 0) :]:
        lc.publish(frames)
        lc.run()
    _finish(lc)
    wins, ref_ids = reference
    assert _windows(lc.table.written) == wins
    ids = [a["alert_id"] for a in lc.alerts]
    assert len(ids) == len(set(ids)), "an alert was raised twice"
    assert set(ids) <= set(ref_ids)
    assert sum(c.repeats for c in lc.counters.values()) == 4 * min(cut, 3)  # once per counts partition
    if cut > 60:  # windows became final: a part is re-read, not everything
        took = lc.takeovers[before:]
        assert took and all(0 < n < (cut if what == "counts" else 4 * cut) for what, n in took), took


def test_a_late_packet_corrects_its_published_window_with_the_next_revision() -> None:
    lc = _counting(2)
    ts0 = np.array([H + 10, H + 20], np.int64) * 10**9
    addrs = np.array([1, 2], np.uint64)
    codes = np.zeros(2, np.int64)
    lc.publish(_frames((0, 0, ts0, codes, addrs, int(ts0.max())), 2))
    later = np.array([H + 600], np.int64) * 10**9
    lc.publish(_frames((1, 0, later, codes[:1], addrs[:1], int(later.max())), 2))
    lc.idle(0)  # partition 0 falls silent: partition 1 alone moves the watermark on
    lc.run()
    first = _windows(lc.table.written)[("port", "1m", H)]
    assert first == {"23/tcp": (2, 2)}
    # Partition 0 speaks again with a packet of the closed minute, from a new source.
    late = np.array([H + 30], np.int64) * 10**9
    lc.publish(_frames((0, 1, late, codes[:1], np.array([3], np.uint64), int(ts0.max())), 2))
    lc.idle(0)  # and falls silent again: the reopened minute closes again
    lc.run()
    minute = next(m for m in orjson.loads(lc.table.written[b"port|1m|%d" % H])["minutes"] if m["start"] == H)
    assert (minute["packets"], minute["sources"], minute["revision"]) == ([3], [3], 1)
    assert sum(m.corrections for m in lc.mergers.values()) >= 1


def test_a_window_waits_for_every_counts_partition() -> None:
    table: dict[bytes, bytes] = {}
    merger = WindowMerger("port", 2, table, detector_of(SETTINGS), 3600)
    i = np.zeros(1, np.int64)

    def msg(shard: int, watermark: int, packets: int) -> WindowCounts:
        rows = WindowRows(
            "port",
            ["23/tcp"],
            np.zeros(1, np.uint8) + MINUTE,
            i + H,
            np.zeros(1, np.uint32),
            i + packets,
            i + 1,
        )
        return WindowCounts(shard, 2, watermark, rows)

    merger.add(msg(0, H + 120, 5), 0)
    assert not table  # counts partition 1 has not passed the minute yet
    merger.add(msg(1, H + 60, 7), 1)
    assert orjson.loads(table[b"port|1m|%d" % H])["minutes"][0]["packets"] == [12]
    merger.add(msg(1, H + 60, 7), 2)  # sent again (a takeover): replaces, adds nothing
    assert orjson.loads(table[b"port|1m|%d" % H])["minutes"][0]["packets"] == [12]


def test_undecodable_partials_and_windows_are_refused() -> None:
    codec = Codec()
    (p,) = aggregate("port", np.array([H * 10**9]), np.zeros(1, np.int64), VALUES[:1], np.ones(1, np.uint64))
    good = encode_frame(codec, PartialFrame((p,), 0, H * 10**9, 0, 0, 1))
    assert decode_frame(codec, good).partials[0].total_packets == 1
    with pytest.raises(UndecodableMessage):
        decode_frame(codec, good[:-3])
    with pytest.raises(UndecodableMessage):
        decode_frame(codec, encode_frame(codec, PartialFrame((p,), 0, 0, 0, 3, 2)))  # partition 3 of 2
    bad = codec.decode(good).record
    bad["kinds"][0]["packets"] = b"\x01\x00"  # not a whole number of <u4
    with pytest.raises(UndecodableMessage):
        decode_frame(codec, codec.encode("darkscope.PartialCounts", bad))
    rows = WindowRows(
        "port",
        ["x"],
        np.zeros(1, np.uint8),
        np.zeros(1, np.int64) + H,
        np.zeros(1, np.uint32),
        np.ones(1, np.int64),
        np.ones(1, np.int64),
    )
    frame = encode_window_counts(codec, 0, 1, H + 60, rows)
    assert decode_window_counts(codec, frame).rows.packets.tolist() == [1]
    rec = codec.decode(frame).record
    rec["value_idx"] = (5).to_bytes(4, "little")
    with pytest.raises(UndecodableMessage):
        decode_window_counts(codec, codec.encode("darkscope.WindowCounts", rec))
    with pytest.raises(UndecodableMessage):
        decode_window_counts(codec, good)  # a PartialCounts is not WindowCounts


def test_a_large_close_is_cut_between_windows_and_only_the_last_piece_moves_the_watermark() -> None:
    codec = Codec()
    starts = np.repeat(np.array([H, H + 60, H + 120], np.int64), [3, 12, 2])
    n = len(starts)
    rows = WindowRows(
        "port",
        ["a"],
        np.zeros(n, np.uint8),
        starts,
        np.zeros(n, np.uint32),
        np.ones(n, np.int64),
        np.ones(n, np.int64),
    )
    pieces = [decode_window_counts(codec, f) for f in window_counts_frames(codec, 0, 1, H + 180, H, rows, 4)]
    assert [len(p.rows) for p in pieces] == [3, 12, 2]  # the 12-row window goes whole
    assert [p.watermark for p in pieces] == [H, H, H + 180]
    assert np.concatenate([p.rows.start for p in pieces]).tolist() == starts.tolist()


def test_closes_put_off_by_the_throttle_happen_on_the_timer_and_change_nothing(
    reference: tuple[dict[Any, Any], list[str]], partials: list[list[PartialFrame]]
) -> None:
    now = [0.0]
    first = -1
    lc = _counting(4)
    lc.close_every, lc.clock = 5.0, lambda: now[0]
    for i, frames in enumerate(partials):
        lc.publish(frames)
        lc.run()
        if i == 2:
            first = len(_windows(lc.table.written))  # the first close (at clock 0)
        if i == 8:
            assert len(_windows(lc.table.written)) == first, "closed again within the throttle"
        if i % 10 == 9:  # the timer fires with the clock moved on
            now[0] += 6.0
            lc.tick()
            lc.run()
    lc.tick()  # nothing is due before the clock moves
    now[0] += 6.0
    lc.tick()
    _finish(lc)
    wins, ids = reference
    assert _windows(lc.table.written) == wins
    assert [a["alert_id"] for a in lc.alerts] == ids


def test_published_windows_are_kept_while_a_counts_partition_can_still_correct_them() -> None:
    table: dict[bytes, bytes] = {}
    merger = WindowMerger("port", 2, table, detector_of(SETTINGS), 600)
    i = np.zeros(1, np.int64)

    def msg(shard: int, watermark: int, start: int, packets: int, horizon: int) -> WindowCounts:
        rows = WindowRows(
            "port", ["23/tcp"], np.zeros(1, np.uint8), i + start, np.zeros(1, np.uint32), i + packets, i + 1
        )
        return WindowCounts(shard, 2, watermark, rows, horizon)

    merger.add(msg(0, H + 7200, H, 5, H + 6600), 0)
    merger.add(msg(1, H + 7200, H, 7, H - 3600), 1)  # its data lags: it corrects from H - 1 h
    # Two hours on, with a retention of 600 s; counts partition 1 corrects minute H.
    merger.add(msg(1, H + 7200, H, 9, H - 3600), 2)
    minute = orjson.loads(table[b"port|1m|%d" % H])["minutes"][0]
    assert (minute["packets"], minute["revision"]) == ([14], 1)
    # Both horizons move past the minute: it is forgotten, and a copy sent again is too late.
    merger.add(msg(0, H + 9000, H + 8000, 1, H + 8400), 3)
    merger.add(msg(1, H + 9000, H + 8000, 1, H + 8400), 4)
    result = merger.add(msg(1, H + 9000, H, 9, H + 8400), 5)
    assert result.too_late == 1 and result.corrected == 0


def test_the_table_holds_the_windows_still_correctable_and_the_changelog_every_window(
    partials: list[list[PartialFrame]], reference: tuple[dict[Any, Any], list[str]]
) -> None:
    lc = _run(4, partials)
    hours = {int(k.split(b"|")[2]) for k in lc.table.written if k.count(b"|") == 2}
    held = {int(k.split(b"|")[2]) for k in lc.table if k.count(b"|") == 2}
    # Twelve hours of windows were published; the table keeps the retention behind the newest
    # (a worker's memory does not grow with event time), a reader of the changelog sees them all.
    assert len(hours) == 12 and held and len(held) < len(hours)
    assert min(held) >= max(hours) - SETTINGS.retention - 3600
    assert _windows(lc.table.written) == reference[0]


def _new_victims_every_hour(shards: int) -> LocalCounting:
    """Twelve hours in which the values change every hour (victims of new attacks), late
    packets included, through both counting stages."""
    rng = np.random.default_rng(11)
    lc = _counting(shards)
    wm = [0, 0]
    for i in range(96):
        p = i % SOURCES
        ts = np.sort(rng.integers(i * 450 - 1500, (i + 1) * 450, 200).clip(0)) + H
        hour = (ts - H) // 3600
        values = [f"{h}/{k}" for h in range(12) for k in range(5)]
        codes = hour * 5 + rng.integers(0, 5, 200)
        addrs = rng.integers(0, 300, 200).astype(np.uint64)
        wm[p] = max(wm[p], int(ts.max()) * 10**9)
        ns = ts.astype(np.int64) * 10**9
        victim = aggregate("victim", ns, codes.astype(np.int64), values, addrs, shards)
        sensor = aggregate("sensor", ns, np.zeros(len(ts), np.int64), ["s1"], addrs, shards)
        lc.publish(
            [PartialFrame((victim[s], sensor[s]), p, wm[p], i // SOURCES, s, shards) for s in range(shards)]
        )
        lc.run()
    return _finish(lc)


def test_dictionaries_that_let_go_of_old_values_publish_the_same_windows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The counts partitions' and the merge stage's dictionaries keep only the values of the
    windows they may still close or correct (a worker's memory does not grow with every victim
    ever seen); the changelog holds the same windows as with dictionaries that keep all."""
    whole = _new_victims_every_hour(3)
    monkeypatch.setattr(ValueIds, "FLOOR", 4)
    kept = _new_victims_every_hour(3)
    assert _windows(kept.table.written) == _windows(whole.table.written)
    assert len([k for k in _windows(kept.table.written) if k[:2] == ("victim", "1h")]) == 12
    merger = kept.mergers["victim"]
    assert merger.compactions > 0 and whole.mergers["victim"].compactions == 0
    assert merger.corrections > 0  # late packets reopened windows published before
    assert len(merger.dictionary.values) < len(whole.mergers["victim"].dictionary.values) == 60
    counters = [c.windows["victim"] for c in kept.counters.values()]
    assert all(w.compactions > 0 and len(w.values) < 60 for w in counters)


def test_an_episode_closes_in_the_first_quiet_minute_not_at_the_next_victims() -> None:
    """Five minutes of replies from one victim, then twenty minutes without backscatter: the
    episode's close record comes once the first minute without it is published, while the
    input goes on (the detector sees only minutes that have victims)."""
    lc = _counting(2)
    for i in range(25):
        p = i % SOURCES
        ts = (H + i * 60 + np.arange(0, 60, 1.2)).astype(np.int64) * 10**9
        addrs = np.arange(len(ts), dtype=np.uint64)
        victims = ["192.0.2.7"] if i < 5 else []
        codes = np.zeros(len(ts) if victims else 0, np.int64)
        victim = aggregate("victim", ts[: len(codes)], codes, victims, addrs[: len(codes)], 2)
        sensor = aggregate("sensor", ts, np.zeros(len(ts), np.int64), ["s1"], addrs, 2)
        lc.publish([PartialFrame((victim[s], sensor[s]), p, int(ts.max()), i, s, 2) for s in range(2)])
        lc.run()
    records = [a for a in lc.alerts if a["kind"] == "backscatter_episode"]
    assert [a["evidence"]["state"] for a in records] == ["open", "close"]
    assert records[-1]["window_end"].timestamp() == H + 5 * 60
    assert lc.detector.close_before(2**62) == []


@pytest.mark.parametrize("restart_at", [78, 80, 90, 110])
@pytest.mark.parametrize("uncommitted", [0, 2, 6])
def test_a_restarted_worker_does_not_send_again_the_records_of_an_episode_closed_before(
    restart_at: int, uncommitted: int
) -> None:
    """Two hours of traffic with one episode (minutes 70 to 74) closed by the quiet minute
    after it; the worker restarts with nothing in memory, having merged windows messages it
    did not commit. Its detector rebuilds the episode from the windows it reads again, whose
    alerts it does not send again (the table holds them); nor does it send the episode's
    records again: each is on the alerts topic once."""
    settings = WorkerSettings(retention=600, lateness=60)
    lc = LocalCounting(settings, 2, SOURCES, detector_of(settings))
    for i in range(120):
        if i == restart_at:
            lc.restart(detector_of(settings), uncommitted)
        p = i % SOURCES
        ts = (H + i * 60 + np.arange(0, 60, 1.2)).astype(np.int64) * 10**9
        addrs = np.arange(len(ts), dtype=np.uint64)
        victims = ["192.0.2.7"] if 70 <= i < 75 else []
        codes = np.zeros(len(ts) if victims else 0, np.int64)
        victim = aggregate("victim", ts[: len(codes)], codes, victims, addrs[: len(codes)], 2)
        sensor = aggregate("sensor", ts, np.zeros(len(ts), np.int64), ["s1"], addrs, 2)
        lc.publish(
            [PartialFrame((victim[s], sensor[s]), p, int(ts.max()), i // SOURCES, s, 2) for s in range(2)]
        )
        lc.run()
    _finish(lc)
    records = [
        (a["alert_id"], a["evidence"]["state"]) for a in lc.alerts if a["kind"] == "backscatter_episode"
    ]
    assert [state for _, state in records] == ["open", "close"], records
