"""Shared CLI options: one decorator per option, one meaning per option.

An option that overrides a setting is a :class:`SettingOption`: its ``--help`` ends with the
setting's environment variable and default, as bytewax does (``[env: DARKSCOPE_BOOTSTRAP]``),
and its value is None unless given on the command line, so the settings class (environment,
then default) stays the one place a value comes from. :func:`build` makes the settings class
from the options given and turns a bad value into a CLI error that names the option or the
environment variable it came from.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import ValidationError
from pydantic_settings import BaseSettings

from core.settings import KafkaSettings, ReportSettings, SensorSettings, SinkSettings

__all__ = [
    "SIM_SENSOR_ID",
    "SettingOption",
    "bootstrap_option",
    "build",
    "dsn_option",
    "env_name",
    "focus_region_option",
    "packets_per_day_option",
    "partitions_option",
    "prefix_option",
    "quarter_option",
    "report_out_option",
    "sensor_id_option",
]

F = TypeVar("F", bound=Callable[..., Any])
S = TypeVar("S", bound=BaseSettings)

SIM_SENSOR_ID = "sim-0"  # the simulator's sensor id when neither --sensor-id nor the environment gives one


def env_name(settings_cls: type[BaseSettings], field: str) -> str:
    """The environment variable of one setting, e.g. ``DARKSCOPE_SENSOR_SENSOR_ID``."""
    return f"{settings_cls.model_config.get('env_prefix', '')}{field}".upper()


class SettingOption(click.Option):
    """A click option that overrides one field of a settings class; its help names the variable."""

    def __init__(
        self,
        param_decls: Sequence[str],
        *,
        settings_cls: type[BaseSettings],
        field: str,
        default_text: str | None = None,
        **attrs: Any,
    ) -> None:
        info = settings_cls.model_fields[field]
        self.settings_cls, self.field, self.env = settings_cls, field, env_name(settings_cls, field)
        if default_text is None:
            default_text = "" if info.default is None else str(info.default)
        help_text = attrs.pop("help", None) or str(info.description)
        # Two spaces before each bracket, as click sets its own ("[required]", "[x>=1]").
        attrs["help"] = f"{help_text}  [env: {self.env}]  [default: {default_text}]"
        attrs.setdefault("default", None)
        attrs["show_default"] = False  # the settings class owns the default, shown above
        super().__init__(param_decls, **attrs)


def _setting_option(
    settings_cls: type[BaseSettings], field: str, *param_decls: str, **attrs: Any
) -> Callable[[F], F]:
    return click.option(*param_decls, cls=SettingOption, settings_cls=settings_cls, field=field, **attrs)


def build(settings_cls: type[S], **given: Any) -> S:
    """``settings_cls`` with the options given (None or empty: not given) over its environment.

    A value the settings refuse becomes a usage error naming the option, or the environment
    variable when the value came from there.
    """
    values = {k: v for k, v in given.items() if v is not None and v != ()}
    try:
        return settings_cls(**values)
    except ValidationError as exc:
        options = _options_by_field(settings_cls)
        problems = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else ""
            given_as = options.get(field) if field in values else None
            problems.append(f"{given_as or env_name(settings_cls, field)}: {err['msg']}")
        raise click.UsageError("; ".join(problems)) from exc


def _options_by_field(settings_cls: type[BaseSettings]) -> dict[str, str]:
    """The current command's options that override ``settings_cls``, by field."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return {}
    return {
        p.field: p.opts[0]
        for p in ctx.command.params
        if isinstance(p, SettingOption) and p.settings_cls is settings_cls
    }


# -- options backed by settings ------------------------------------------------------------

bootstrap_option = _setting_option(KafkaSettings, "bootstrap", "--bootstrap", metavar="HOST:PORT")
partitions_option = _setting_option(
    KafkaSettings, "partitions", "--partitions", type=click.IntRange(min=1), metavar="N"
)
dsn_option = _setting_option(
    SinkSettings, "dsn", "--dsn", metavar="DSN", default_text="chdb://./.darkscope/clickhouse"
)
focus_region_option = _setting_option(ReportSettings, "focus_region", "--focus-region", metavar="CODE")
report_out_option = _setting_option(
    ReportSettings, "out_dir", "--out", "out_dir", type=click.Path(path_type=Path), metavar="DIR"
)
prefix_option = _setting_option(
    SensorSettings,
    "prefixes",
    "--prefix",
    "prefixes",
    multiple=True,
    metavar="CIDR",
    help="Monitored prefix (repeatable); packets to other destinations are dropped.",
    default_text="none: every destination",
)


def sensor_id_option(default_text: str = "host name") -> Callable[[F], F]:
    """``--sensor-id``: the sensor id the batches and health records carry."""
    return _setting_option(
        SensorSettings,
        "sensor_id",
        "--sensor-id",
        metavar="ID",
        help="Sensor id the packet batches and health records carry.",
        default_text=default_text,
    )


# -- options that are not settings --------------------------------------------------------


def quarter_option(*, required: bool = False, default: str | None = None) -> Callable[[F], F]:
    """``--quarter``: a calendar quarter, written like 2022Q2."""
    return click.option(
        "--quarter",
        required=required,
        default=default,
        show_default=default is not None,
        metavar="YYYYQN",
        help="Quarter, written like 2022Q2.",
    )


def packets_per_day_option(default: int) -> Callable[[F], F]:
    """``--packets-per-day``: the simulated volume."""
    return click.option(
        "--packets-per-day",
        type=click.IntRange(min=1),
        metavar="N",
        default=default,
        show_default=True,
        help="Simulated packets a day.",
    )
