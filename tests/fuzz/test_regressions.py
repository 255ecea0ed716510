"""Every input the fuzzer found (``tests/data/fuzz/<target>/``), replayed through its
harness: it must end in a darkscope error or in nothing, within the fuzzing bound.

A fuzzer finding is copied here once fixed (see ``fuzz/__init__.py``); each file is named for
what it broke. The harnesses' seeds run too, so a harness that stops accepting valid input
fails here rather than in a long fuzzing run.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pytest

from core.errors import DarkscopeError
from fuzz.runner import BOUND_S, TARGETS, load

DATA = Path(__file__).resolve().parents[1] / "data" / "fuzz"

CASES = sorted((p.parent.name, p) for p in DATA.glob("*/*") if p.is_file())


def test_every_regression_case_belongs_to_a_target() -> None:
    assert CASES, f"no regression cases under {DATA}"
    assert {target for target, _ in CASES} <= set(TARGETS)


@pytest.mark.parametrize(("target", "path"), CASES, ids=[f"{t}/{p.name}" for t, p in CASES])
def test_fuzzer_finding_ends_in_a_darkscope_error_or_nothing_within_the_bound(
    target: str, path: Path
) -> None:
    check = load(target).check
    data = path.read_bytes()
    started = time.perf_counter()
    with contextlib.suppress(DarkscopeError):
        check(data)
    assert time.perf_counter() - started < BOUND_S


@pytest.mark.parametrize("target", TARGETS)
def test_every_seed_of_a_harness_is_read_without_error(target: str) -> None:
    harness = load(target)
    seeds = harness.seeds()
    assert seeds
    failures = []
    for seed in seeds:
        try:
            harness.check(seed)
        except DarkscopeError as exc:
            failures.append(exc)
    # The message harnesses' seeds include one frame of every other schema, which the
    # consumer rejects; the captures and frames are all valid.
    if target in ("pcap", "pcapng", "decode"):
        assert failures == []
    else:
        assert len(failures) < len(seeds)
