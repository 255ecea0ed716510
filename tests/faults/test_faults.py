"""``make faults`` at a small scale: real worker, sink and sensor processes on the test broker
(the scenarios that kill no broker), and the verdict's arithmetic."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from faults.check import compare
from faults.run import table
from faults.scenarios import Scale, run_scenario

SMALL = Scale(days=1, packets_per_day=20_000, rate=4.0, timeout_s=300.0)


def _truth(tmp_path: Path, days: dict[str, int]) -> Path:
    path = tmp_path / "truth.json"
    path.write_text(json.dumps({"daily": [{"date": d, "packets": n} for d, n in days.items()]}))
    return path


def test_the_verdict_counts_what_the_store_or_the_windows_lost_or_doubled(tmp_path: Path) -> None:
    truth = _truth(tmp_path, {"2022-04-01": 100, "2022-04-02": 50})
    stored = Counter({("2022-04-01", "23/tcp"): 120, ("2022-04-02", "23/tcp"): 50})
    counted = Counter({("2022-04-01", "23/tcp"): 100, ("2022-04-02", "23/tcp"): 40})
    v = compare("x", 3.0, truth, stored, counted, Counter({"a#open#0": 2, "a#close#1": 1}), [], [b"bad"])
    assert (v.store_doubled, v.store_lost, v.windows_doubled, v.windows_lost) == (20, 0, 0, 10)
    assert (v.lost, v.doubled, v.cells_differing) == (10, 20, 2)
    assert (v.alerts, v.alerts_twice, v.dead_missing) == (2, 1, 1)
    assert not v.ok
    assert "| x | 3 s | 150 | 0 / 10 | 20 / 0 | 2 | 1 of 2 | 0 of 1 |" in table([v], {})


def test_an_exact_run_is_ok_and_a_dead_letter_needs_its_reason(tmp_path: Path) -> None:
    truth = _truth(tmp_path, {"2022-04-01": 100})
    cells = Counter({("2022-04-01", "23/tcp"): 60, ("2022-04-01", "icmp"): 40})
    dead = [{"payload": b"bad", "reason": "undecodable"}, {"payload": b"worse", "reason": ""}]
    v = compare("x", 1.0, truth, cells, Counter(cells), Counter({"a#open#0": 1}), dead, [b"bad"])
    assert v.ok
    assert not compare("x", 1.0, truth, cells, Counter(cells), Counter(), dead, [b"worse"]).ok
    assert not compare("x", None, truth, cells, Counter(cells), Counter(), dead, []).ok  # never recovered


@pytest.mark.broker
def test_a_worker_killed_mid_stream_leaves_every_packet_stored_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    v = run_scenario("worker SIGKILLed, restarted", tmp_path, kafka_bootstrap, SMALL, drop_topics=True)
    # The store: the re-enriched batches a restarted worker sends again are stored once
    # (sinks.repeats). The windows: the restarted worker rebuilds its counts and merges from
    # their replay points and counts every packet once (streams.takeover, streams.watch).
    assert v.recovered_s is not None, v
    assert (v.store_lost, v.store_doubled) == (0, 0), v
    assert (v.windows_lost, v.windows_doubled) == (0, 0), v
    assert v.alerts_twice == 0 and v.dead_missing == 0, v
    assert v.sent > 0 and v.dead_expected == 2
    assert v.ok, v


@pytest.mark.broker
def test_a_sink_killed_between_insert_and_commit_loses_and_doubles_nothing(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    v = run_scenario("sink SIGKILLed insert..commit", tmp_path, kafka_bootstrap, SMALL, drop_topics=True)
    assert v.ok, v
    assert "intent committed" in v.note
