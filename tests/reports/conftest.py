"""One store for the reports package, filled without Kafka: the 2022Q1 and 2022Q2 story
quarters under sensor 'story', the flat 2022Q2 control under sensor 'flat', and a few packets
a day under sensor 'gappy', with days missing (``fill_days``).

Package-scoped: chDB opens one path per process at a time, so the store is closed when the
reports tests end and the sink tests can open their own."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from reports.build import ReportPaths, write_report
from sinks.store import Store
from tests.reports.fill import fill_days, fill_quarter

# Volume: rankings keep >= 20% margins and events stay clear of the noise at this rate; the
# simulator's day-to-day noise (10% per cell) does not shrink with volume anyway.
PACKETS_PER_DAY = 20_000


@dataclass(frozen=True)
class Quarter:
    """A filled quarter: its ground truth and the report written from the store."""

    truth: dict[str, Any]
    paths: ReportPaths
    report: dict[str, Any]


@pytest.fixture(scope="package")
def report_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    path = tmp_path_factory.mktemp("report-store") / "store"
    store = Store.open(f"chdb://{path}")
    store.migrate()
    yield store
    store.close()


@pytest.fixture(scope="package")
def story(report_store: Store, tmp_path_factory: pytest.TempPathFactory) -> Quarter:
    import json

    q1, _ = fill_quarter(report_store, "2022Q1", sensor="story", packets_per_day=PACKETS_PER_DAY)
    q2, _ = fill_quarter(report_store, "2022Q2", sensor="story", packets_per_day=PACKETS_PER_DAY, previous=q1)
    out = tmp_path_factory.mktemp("report-story")
    paths = write_report(report_store, "2022Q2", out, sensor="story", focus_region="JP")
    return Quarter(q2.to_dict(), paths, json.loads(paths.json.read_text()))


@pytest.fixture(scope="package")
def control(report_store: Store, tmp_path_factory: pytest.TempPathFactory) -> Quarter:
    import json

    q2, _ = fill_quarter(report_store, "2022Q2", sensor="flat", packets_per_day=PACKETS_PER_DAY, flat=True)
    out = tmp_path_factory.mktemp("report-control")
    paths = write_report(report_store, "2022Q2", out, sensor="flat", focus_region="JP")
    return Quarter(q2.to_dict(), paths, json.loads(paths.json.read_text()))


@pytest.fixture(scope="package")
def story_html(story: Quarter) -> Path:
    return story.paths.html


# Days of 2022Q2 (0 = Apr 1) sensor 'gappy' stored nothing: Apr 5, Apr 7 (so Apr 6 stands
# alone between two gaps) and Apr 10 to Apr 12.
GAPPY_MISSING = (4, 6, 9, 10, 11)


@pytest.fixture(scope="package")
def gappy(report_store: Store, tmp_path_factory: pytest.TempPathFactory) -> Quarter:
    import json

    from reports.quarters import quarter_days

    days = [d for i, d in enumerate(quarter_days("2022Q2")) if i not in GAPPY_MISSING]
    fill_days(report_store, days, sensor="gappy")
    out = tmp_path_factory.mktemp("report-gappy")
    paths = write_report(report_store, "2022Q2", out, sensor="gappy", focus_region="JP")
    return Quarter({}, paths, json.loads(paths.json.read_text()))
