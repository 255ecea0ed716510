"""The command line surface."""

from __future__ import annotations

from click.testing import CliRunner

from darkscope.cli import main


def test_help_lists_the_commands() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in ("broker", "topics", "demo"):
        assert command in result.output


def test_broker_help_lists_up_down_status() -> None:
    result = CliRunner().invoke(main, ["broker", "--help"])
    for sub in ("up", "down", "status", "fetch"):
        assert sub in result.output
