"""`darkscope broker up|status|down` against a real broker on its own port and data folder."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from core.settings import TopicNames
from darkscope.cli import main


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# Starts a broker of its own (Java, the Maven jars): with the broker tests, not in the quick run.
@pytest.mark.broker
def test_up_status_down_cycle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = _free_port()
    monkeypatch.setenv("DARKSCOPE_BROKER_PORT", str(port))
    monkeypatch.setenv("DARKSCOPE_BROKER_CONTROLLER_PORT", str(_free_port()))
    monkeypatch.setenv("DARKSCOPE_BROKER_DATA_DIR", str(tmp_path / "kafka"))
    monkeypatch.setenv("DARKSCOPE_PARTITIONS", "2")
    runner = CliRunner()
    try:
        up = runner.invoke(main, ["broker", "up"])
        assert up.exit_code == 0, up.output
        assert f"broker started on 127.0.0.1:{port}" in up.output
        for name in TopicNames().all():
            assert f"topic {name}: 2 partitions" in up.output

        again = runner.invoke(main, ["broker", "up", "--no-topics"])
        assert again.exit_code == 0 and "already running" in again.output

        status = runner.invoke(main, ["broker", "status"])
        assert status.exit_code == 0 and f"broker running on 127.0.0.1:{port}" in status.output
        assert (tmp_path / "kafka" / "broker.log").stat().st_size > 0
        assert (tmp_path / "kafka" / "logs" / "meta.properties").exists()
    finally:
        down = runner.invoke(main, ["broker", "down"])
    assert down.exit_code == 0 and "broker stopped" in down.output
    after = runner.invoke(main, ["broker", "status"])
    assert after.exit_code == 1 and "no broker running" in after.output
    assert runner.invoke(main, ["broker", "down"]).output.strip() == "no broker was running"


def test_up_refuses_a_port_held_by_something_else(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        monkeypatch.setenv("DARKSCOPE_BROKER_PORT", str(squatter.getsockname()[1]))
        monkeypatch.setenv("DARKSCOPE_BROKER_DATA_DIR", str(tmp_path / "kafka"))
        result = CliRunner().invoke(main, ["broker", "up"])
    assert result.exit_code != 0
    assert "is taken by something that is not a Kafka broker" in result.output
