"""The shell: the ``darkscope`` command line (``darkscope.cli``) and the demo
(``darkscope.demo``). It wires settings to the packages; no package imports it.

The packages, in the order data flows through them: ``producers`` (sensors, simulator) ->
``schemas`` (the wire vocabulary) -> ``streams`` (Faust agents) -> ``sinks`` (ClickHouse) ->
``reports``; all stand on ``core`` (errors, settings, Kafka helpers, the local broker).
"""

from core import __version__

__all__ = ["__version__"]
