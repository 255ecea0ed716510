"""Shared options: each shows its environment variable in --help and has one meaning everywhere."""

from __future__ import annotations

from collections import defaultdict

import click
import pytest
from click.testing import CliRunner

from core.settings import ALL_SETTINGS, KafkaSettings, SensorSettings
from darkscope.cli import main
from darkscope.options import SettingOption, build, env_name
from tests.darkscope.test_cli import ALL_COMMANDS

# (command words, option) for every option that overrides a setting.
SETTING_OPTIONS = [
    (words, param)
    for words, command in ALL_COMMANDS
    for param in command.params
    if isinstance(param, SettingOption)
]
# Spelled alike in several commands, each meaning where (--out: a folder; only the report's is a
# setting) or in what format (--format) that command writes.
SAME_WORD_PER_COMMAND = {"--out", "--format"}


def _env_names() -> set[str]:
    return {env_name(cls, field) for cls in ALL_SETTINGS for field in cls.model_fields}


def test_the_cli_has_setting_options() -> None:
    flags = {p.opts[0] for _, p in SETTING_OPTIONS}
    assert {"--bootstrap", "--partitions", "--sensor-id", "--prefix", "--dsn", "--focus-region"} <= flags


@pytest.mark.parametrize(
    ("words", "option"),
    SETTING_OPTIONS,
    ids=[f"{' '.join(w)} {p.opts[0]}" for w, p in SETTING_OPTIONS],
)
def test_help_shows_the_environment_variable_of_each_setting_option(
    words: tuple[str, ...], option: SettingOption
) -> None:
    result = CliRunner().invoke(main, [*words, "--help"])
    help_text = " ".join(result.output.split())  # the help is wrapped to the terminal
    assert option.env in _env_names()
    assert f"[env: {option.env}]" in help_text
    assert f"{option.opts[0]} " in help_text


def test_sensor_options_name_the_sensor_settings_variables() -> None:
    result = CliRunner().invoke(main, ["sensor", "--help"], terminal_width=200)
    assert "[env: DARKSCOPE_SENSOR_SENSOR_ID]" in result.output
    assert "[env: DARKSCOPE_SENSOR_PREFIXES]" in result.output
    assert "[env: DARKSCOPE_BOOTSTRAP]" in result.output


def test_each_setting_option_spelling_has_one_meaning() -> None:
    meanings: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for _, option in SETTING_OPTIONS:
        for flag in option.opts:
            meanings[flag].add((option.settings_cls.__name__, option.field))
    assert {flag: m for flag, m in meanings.items() if len(m) > 1} == {}
    # ... and no ordinary (visible) option borrows the spelling of a setting option.
    for words, command in ALL_COMMANDS:
        for param in command.params:
            if isinstance(param, click.Option) and not isinstance(param, SettingOption) and not param.hidden:
                borrowed = (set(param.opts) & set(meanings)) - SAME_WORD_PER_COMMAND
                assert not borrowed, f"{' '.join(words)} {param.opts}"


def test_a_visible_option_is_declared_once_per_meaning() -> None:
    """An ordinary option spelled alike in two commands says the same in both (one decorator)."""
    helps: dict[str, set[str]] = defaultdict(set)
    for _, command in ALL_COMMANDS:
        for param in command.params:
            if isinstance(param, click.Option) and not isinstance(param, SettingOption) and not param.hidden:
                helps[param.opts[0]].add(param.help or "")
    conflicting = {flag for flag, h in helps.items() if len(h) > 1}
    assert conflicting <= SAME_WORD_PER_COMMAND


def test_build_takes_the_options_given_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DARKSCOPE_SENSOR_SENSOR_ID", "from-env")
    monkeypatch.setenv("DARKSCOPE_SENSOR_PREFIXES", "192.0.2.0/24")
    assert build(SensorSettings, sensor_id=None, prefixes=()).sensor_id == "from-env"
    assert build(SensorSettings, sensor_id=None, prefixes=()).prefixes == ["192.0.2.0/24"]
    given = build(SensorSettings, sensor_id="from-cli", prefixes=("198.51.100.0/24", "203.0.113.0/24"))
    assert (given.sensor_id, given.prefixes) == ("from-cli", ["198.51.100.0/24", "203.0.113.0/24"])


def test_build_falls_back_to_the_settings_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DARKSCOPE_BOOTSTRAP", raising=False)
    assert build(KafkaSettings, bootstrap=None).bootstrap == KafkaSettings.model_fields["bootstrap"].default


def test_a_bad_environment_value_is_a_usage_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DARKSCOPE_PARTITIONS", "0")
    result = CliRunner().invoke(main, ["topics", "create"])
    assert result.exit_code == 2
    assert "DARKSCOPE_PARTITIONS: Input should be greater than or equal to 1" in result.output
    assert "Traceback" not in result.output


def test_a_bad_option_value_is_a_usage_error_naming_the_option() -> None:
    result = CliRunner().invoke(main, ["topics", "create", "--partitions", "0"])
    assert result.exit_code == 2
    assert "Invalid value for '--partitions'" in result.output
