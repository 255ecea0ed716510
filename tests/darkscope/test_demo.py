"""`darkscope demo --pcap`: the user's captures through the real pipeline to a report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.settings import KafkaSettings
from core.topics import admin_client
from darkscope.demo import DemoPlan, run_demo
from tests.conftest import broker_settings_for_tests
from tests.kafka_helpers import drop_topics
from tests.producers.pktbuild import shared_captures

CAPTURES = shared_captures()
# Packets each capture holds (../shared/captures/README.md, counted with tshark and dpkt).
SYNSCAN, REFLECTION = ("synscan.pcapng", 2011), ("amp.TCP.reflection.SYNACK.pcap", 7996)


@pytest.mark.broker
@pytest.mark.skipif(not CAPTURES.is_dir(), reason=f"the shared captures are not at {CAPTURES}")
def test_demo_on_two_shared_captures_writes_the_report_of_each_quarter_they_cover(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    lines: list[str] = []
    plan = DemoPlan(
        out_dir=tmp_path, pcaps=(str(CAPTURES / SYNSCAN[0]), str(CAPTURES / REFLECTION[0])), timeout_s=300
    )
    try:
        html = run_demo(
            broker_settings_for_tests(),
            KafkaSettings(bootstrap=kafka_bootstrap),
            plan,
            keep_broker=True,
            echo=lines.append,
        )
    finally:  # the run's own topics, darkscope-demo.<run id>.*, off the shared test broker
        runs = [p.name.removeprefix("run-") for p in tmp_path.glob("run-*")]
        topics = admin_client(kafka_bootstrap).list_topics(timeout=10).topics
        drop_topics(
            kafka_bootstrap, [t for t in topics for r in runs if t.startswith(f"darkscope-demo.{r}.")]
        )
    out = "\n".join(lines)
    # Nmap's scan was captured in 2010Q3, the reflection attack in 2021Q2: one report each.
    reports = {q: json.loads((tmp_path / f"report-{q}.json").read_text()) for q in ("2010Q3", "2021Q2")}
    assert reports["2010Q3"]["packets"] == SYNSCAN[1]
    assert reports["2021Q2"]["packets"] == REFLECTION[1]
    assert html == tmp_path / "report-2021Q2.html" and html.is_file()
    assert sorted(p.name for p in tmp_path.glob("report-*.html")) == [
        "report-2010Q3.html",
        "report-2021Q2.html",
    ]
    assert f"pipeline drained: {SYNSCAN[1] + REFLECTION[1]:,} packets enriched and stored" in out
    assert "replayed 2 captures as sensor synscan" in out


def test_sensor_id_and_prefix_without_pcap_are_refused() -> None:
    from click.testing import CliRunner

    from darkscope.cli import main

    result = CliRunner().invoke(main, ["demo", "--prefix", "198.51.100.0/24"])
    assert (
        result.exit_code == 2 and "--sensor-id and --prefix describe the captures of --pcap" in result.output
    )


def test_a_capture_that_does_not_exist_is_refused_before_anything_starts(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from darkscope.cli import main

    result = CliRunner().invoke(
        main, ["demo", "--pcap", str(tmp_path / "missing.pcap"), "--out", str(tmp_path)]
    )
    assert result.exit_code == 2 and "does not exist" in result.output
    assert list(tmp_path.iterdir()) == []
