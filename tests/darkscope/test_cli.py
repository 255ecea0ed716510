"""The command line surface: every command answers --help, the entry point, the shell's shape."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from darkscope.cli import main
from tests.conftest import REPO

COMMANDS = ("broker", "topics", "sensor", "simulate", "worker", "alerts", "sink", "sql", "report", "demo")


def walk(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """Every command under ``group`` with the words that invoke it."""
    for name, command in group.commands.items():
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from walk(command, (*path, name))


ALL_COMMANDS = sorted(walk(main), key=lambda item: item[0])


def test_help_lists_the_commands() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in COMMANDS:
        assert f"  {command}  " in result.output


def test_broker_help_lists_up_down_status() -> None:
    result = CliRunner().invoke(main, ["broker", "--help"])
    for sub in ("up", "down", "status", "fetch"):
        assert sub in result.output


@pytest.mark.parametrize("words", [w for w, _ in ALL_COMMANDS], ids=" ".join)
def test_every_command_answers_help(words: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*words, "--help"])
    assert result.exit_code == 0, result.output
    assert f"Usage: main {' '.join(words)} [OPTIONS]" in result.output


def test_entry_point_is_darkscope_cli_main() -> None:
    (script,) = entry_points(group="console_scripts", name="darkscope")
    assert script.value == "darkscope.cli:main"


def test_python_dash_m_darkscope_runs_the_cli() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "darkscope", "--version"], capture_output=True, text=True, check=True
    )
    assert done.stdout.startswith("darkscope, version ")


def test_help_imports_no_pipeline_package() -> None:
    """`darkscope --help` stays fast: producers, streams, sinks and reports load inside commands."""
    code = (
        "import sys; from darkscope.cli import main\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'producers', 'streams', 'sinks', 'reports', 'faust', 'numpy', 'chdb', 'rich'})\n"
        "print(heavy)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("module", sorted((REPO / "darkscope").rglob("*.py")), ids=lambda p: p.name)
def test_shell_modules_stay_under_400_lines(module: Path) -> None:
    assert len(module.read_text().splitlines()) <= 400
