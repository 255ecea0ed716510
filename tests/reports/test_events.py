"""Change detection and events on hand-made daily series (no store)."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np

from reports.changes import detect_changes
from reports.charts import moving_average
from reports.events import Watched, new_entries, rank_swaps, series_events
from reports.ranking import rank_events
from reports.series import Ranked, Series

DAYS = [date(2022, 4, 1) + timedelta(days=i) for i in range(91)]


def _noisy(shape: np.ndarray, seed: int = 0, level: float = 2000.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.poisson(level * shape * np.exp(rng.normal(0, 0.08, len(shape)))).astype(float)


def test_flat_noisy_series_has_no_change() -> None:
    for seed in range(10):
        assert detect_changes(_noisy(np.ones(91), seed)).changes == []


def test_step_up_is_a_surge_dated_on_its_first_day_quoting_the_weeks_either_side() -> None:
    shape = np.where(np.arange(91) >= 40, 2.0, 1.0)
    daily = _noisy(shape)
    events = series_events(Watched("port:23/tcp", "packets to 23/TCP", daily, "fig1"), DAYS)
    assert [(e.kind, e.start) for e in events] == [("surge", DAYS[40])]
    (e,) = events
    wa = moving_average(daily)
    assert [p.day for p in e.compared] == [DAYS[36], DAYS[43]]  # May 4-10 against May 11-17
    assert e.change == wa[43] / wa[36] - 1 and 0.8 < e.change < 1.2
    assert "(May 4-10)" in e.text and "(May 11-17)" in e.text and f"{e.change:+.0%}" in e.text


def test_step_down_is_one_drop_not_also_a_raised_start() -> None:
    # Seen from before it, the same change reads "raised from the start until Apr 24": told once.
    shape = np.where(np.arange(91) >= 24, 0.6, 1.0)
    events = series_events(Watched("region:CN", "packets from China (CN)", _noisy(shape, 3), "fig2"), DAYS)
    assert [(e.kind, e.start) for e in events] == [("drop", DAYS[24])]


def test_three_day_spike_is_a_burst() -> None:
    shape = np.ones(91)
    shape[20:23] = 3.0
    (event,) = series_events(Watched("mirai:JP", "Mirai packets from JP", _noisy(shape), "fig6"), DAYS)
    assert (event.kind, event.start, event.end) == ("burst", DAYS[20], DAYS[22])


def test_gradual_decrease_over_the_quarter_is_a_trend_from_its_start_to_its_low() -> None:
    shape = np.linspace(1.35, 0.65, 91)
    (event,) = series_events(Watched("port:6379/tcp", "packets to 6379/TCP", _noisy(shape), "fig1"), DAYS)
    assert (event.kind, event.start) == ("trend", DAYS[0])
    assert event.change < -0.3 and "from the start of the quarter" in event.text
    assert event.end is not None and event.end >= DAYS[-14]  # the weekly average's low, near the end


def test_a_trend_ends_where_its_weekly_average_stops_rising() -> None:
    shape = np.concatenate([np.ones(30), np.linspace(1.0, 2.5, 30), np.full(31, 2.5)])
    daily = _noisy(shape, 5)
    (event,) = series_events(Watched("mirai:JP", "Mirai packets from JP", daily, "fig6"), DAYS)
    wa = moving_average(daily)
    i0, i1 = (DAYS.index(p.day) for p in event.compared)
    assert abs(DAYS.index(event.start) - 30) <= 3 and 55 <= i1 <= 70
    assert wa[i1] == wa[i0 : i1 + 1].max()


def test_a_cause_is_told_once_with_the_same_days_consequences() -> None:
    step = np.where(np.arange(91) >= 24, 0.3, 1.0)
    cn = _noisy(step, 1, 800)
    rest = _noisy(np.ones(91), 2, 2000)
    watched = [
        Watched("mirai:CN", "Mirai packets from China", cn, "fig5"),
        Watched("region:CN", "packets from China", cn + rest, "fig2"),
    ]
    events = [e for w in watched for e in series_events(w, DAYS)]
    (told,) = rank_events(events, DAYS)
    assert told.series == "mirai:CN" and told.rank == 1
    assert [c.series for c in told.consequences] == ["region:CN"]
    assert told.text.count(";") == 1 and "with it, packets from China fell" in told.text


def test_rank_swap_dated_where_the_weekly_averages_cross_and_hold() -> None:
    # The centred weekly average of a step crosses a level between halfway and the step itself.
    ru = Series("RU", "Russia", _noisy(np.where(np.arange(91) >= 47, 1.6, 0.6), 1))
    cn = Series("CN", "China", _noisy(np.ones(91), 2))
    (swap,) = rank_swaps("region", [cn, ru], DAYS, "fig2")
    assert swap.subject == "region:RU>CN" and swap.start in (DAYS[46], DAYS[47])
    assert swap.end == DAYS[-1] and "stay crossed until the end of the quarter" in swap.text
    t = DAYS.index(swap.start)
    wa_ru, wa_cn = moving_average(ru.daily), moving_average(cn.daily)
    assert (wa_ru[t:] > wa_cn[t:]).all() and (wa_ru[t - 7 : t] < wa_cn[t - 7 : t]).all()


def test_no_rank_swap_between_series_a_fifth_apart() -> None:
    a = Series("A", "A", _noisy(np.ones(91), 3, 1200))
    b = Series("B", "B", _noisy(np.ones(91), 4, 1000))
    assert rank_swaps("port", [a, b], DAYS, "fig1") == []


def test_new_entries_are_ranks_outside_the_previous_top5() -> None:
    ranked = [
        Ranked(1, "23/tcp", "23/TCP", 10, 0.5, 2),
        Ranked(4, "80/tcp", "80/TCP", 5, 0.2, 6),
        Ranked(5, "icmp", "ICMP", 4, 0.1, None),
    ]
    got = [(e.subject, e.kind) for e in new_entries("port", ranked, "2022Q1", DAYS, "fig1")]
    assert got == [("port:80/tcp", "new_entry"), ("port:icmp", "new_entry")]
