"""The shell: the ``darkscope`` command line and the demo. It wires settings to the packages;
no package imports it.

``darkscope.cli`` is the click group (the ``darkscope`` entry point), ``darkscope.commands``
its commands (one module per part of the pipeline), ``darkscope.options`` the options they
share (each naming its ``DARKSCOPE_*`` variable in ``--help``), ``darkscope.progress`` the
simulator's progress bars and ``darkscope.demo`` the whole pipeline on one machine.

The packages, in the order data flows through them: ``producers`` (sensors, simulator) ->
``schemas`` (the wire vocabulary) -> ``streams`` (Faust agents) -> ``sinks`` (ClickHouse) ->
``reports``; all stand on ``core`` (errors, settings, Kafka helpers, the local broker).
"""

from core import __version__

__all__ = ["__version__"]
