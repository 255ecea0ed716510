"""The insert worker thread: inserts overlap the caller's work, and finish in order on its thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import partial

import pytest

from sinks.inserter import Inserter


class _Failed(Exception):
    pass


def _sleeping(seconds: float, log: list[str], name: str) -> Callable[[], None]:
    def insert() -> None:
        time.sleep(seconds)
        log.append(f"insert {name}")

    return insert


def test_thens_run_in_hand_over_order_on_the_callers_thread() -> None:
    inserter = Inserter(depth=2)
    log: list[str] = []
    threads: set[int] = set()

    def then(name: str) -> Callable[[], None]:
        def run() -> None:
            threads.add(threading.get_ident())
            log.append(f"then {name}")

        return run

    try:
        for i, seconds in enumerate([0.05, 0.0, 0.03, 0.0, 0.01]):
            inserter.hand_over(_sleeping(seconds, log, str(i)), then(str(i)))
            assert len(inserter) <= 2
        inserter.finish_all()
    finally:
        inserter.close()
    assert [e for e in log if e.startswith("then")] == [f"then {i}" for i in range(5)]
    for i in range(5):  # each then after its own insert
        assert log.index(f"insert {i}") < log.index(f"then {i}")
    assert threads == {threading.get_ident()}


def test_an_insert_runs_while_the_caller_goes_on() -> None:
    inserter = Inserter(depth=2)
    caller_went_on = threading.Event()
    seen: list[bool] = []
    try:
        inserter.hand_over(lambda: seen.append(caller_went_on.wait(5)), lambda: None)
        caller_went_on.set()  # hand_over returned before the insert finished
        inserter.finish_all()
    finally:
        inserter.close()
    assert seen == [True]


def test_finish_key_finishes_every_earlier_insert_and_those_of_the_key() -> None:
    inserter = Inserter(depth=3)
    done: list[str] = []
    try:
        for key in ("a", "b", "c"):
            inserter.hand_over(lambda: None, partial(done.append, key), key=key)
        inserter.finish_key("b")
        assert done == ["a", "b"] and len(inserter) == 1
        inserter.finish_done()
        inserter.finish_all()
        assert done == ["a", "b", "c"]
    finally:
        inserter.close()


def test_a_failed_insert_raises_from_finish_and_close_drops_the_rest_without_their_then() -> None:
    inserter = Inserter(depth=2)
    done: list[str] = []

    def fail() -> None:
        raise _Failed("ClickHouse gave up")

    inserter.hand_over(lambda: None, lambda: done.append("first"))
    inserter.hand_over(fail, lambda: done.append("failed"))
    with pytest.raises(_Failed):
        inserter.finish_all()
    assert done == ["first"]
    inserter.hand_over(lambda: None, lambda: done.append("later"))
    inserter.close()
    assert done == ["first"] and len(inserter) == 0
