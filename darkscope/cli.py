"""The ``darkscope`` command line: one click group over the commands in ``darkscope.commands``.

The commands only wire settings (``core.settings``, overridden by the shared options of
``darkscope.options``) to the packages; packages slow to import are imported inside them.
"""

from __future__ import annotations

import logging
from typing import Any

import click

from core.errors import DarkscopeError
from darkscope import __version__
from darkscope.commands.broker import broker, topics
from darkscope.commands.csirt import notify, scans, sensors
from darkscope.commands.pipeline import alerts, sink, sql, worker
from darkscope.commands.report import demo, report
from darkscope.commands.sensors import sensor, simulate

__all__ = ["main"]


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(
        level=max(level, logging.DEBUG), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


class _Group(click.Group):
    """Turns DarkscopeError into a clear one-line CLI error instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DarkscopeError as exc:
            raise click.ClickException(f"{type(exc).__name__}: {exc}") from exc


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="darkscope")
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def main(verbose: int) -> None:
    """darkscope: darknet (network telescope) threat monitoring.

    Settings come from DARKSCOPE_* environment variables (see README.md, "Settings"); an
    option that overrides one names its variable in --help ([env: ...]).
    """
    _setup_logging(verbose)


# In the order data flows: the broker, packets in, streams and store, what comes out.
for _command in (
    broker,
    topics,
    sensor,
    simulate,
    worker,
    alerts,
    sink,
    sql,
    sensors,
    scans,
    report,
    notify,
    demo,
):
    main.add_command(_command)


if __name__ == "__main__":  # pragma: no cover
    main()
