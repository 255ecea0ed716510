"""The simulator's progress hook drawn as one bar per quarter: calls in, bars out."""

from __future__ import annotations

import io

from rich.console import Console
from rich.progress import Progress

from darkscope.progress import QuarterBars, quarter_bars


def _bars(progress: Progress) -> dict[str, tuple[float, float | None]]:
    return {t.description: (t.completed, t.total) for t in progress.tasks}


def test_packets_so_far_over_the_run_become_packets_per_quarter() -> None:
    progress = Progress(console=Console(file=io.StringIO()))
    bars = QuarterBars(progress, {"2022Q1": 100, "2022Q2": 100})
    for quarter, so_far in [("2022Q1", 40), ("2022Q1", 90), ("2022Q2", 130), ("2022Q2", 150)]:
        bars(quarter, so_far)
    assert _bars(progress) == {"simulate 2022Q1": (90, 90), "simulate 2022Q2": (60, 100)}
    bars.close()
    assert _bars(progress)["simulate 2022Q2"] == (60, 60)


def test_a_quarter_not_expected_gets_its_own_bar() -> None:
    progress = Progress(console=Console(file=io.StringIO()))
    bars = QuarterBars(progress, {"2022Q2": 10})
    bars("2022Q3", 5)
    bars.close()
    assert _bars(progress) == {"simulate 2022Q2": (0, 10), "simulate 2022Q3": (5, 5)}


def test_quarter_bars_print_the_final_counts_when_not_a_terminal() -> None:
    out = io.StringIO()
    with quarter_bars({"2022Q2": 1000}, Console(file=out, width=100)) as bars:
        bars("2022Q2", 400)
        bars("2022Q2", 980)
    assert "simulate 2022Q2" in out.getvalue()
    assert "980/980 packets" in out.getvalue()
