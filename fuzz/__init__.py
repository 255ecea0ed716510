"""Coverage-guided fuzzing (atheris, libFuzzer) of everything darkscope reads from outside.

One harness per target, each a module with ``check(data)`` (what a consumer does with the
bytes) and ``seeds()`` (valid inputs to start from): ``pcap`` and ``pcapng`` (captures through
:func:`producers.capture.open_capture`, reader and decoder), ``decode`` (the packet decoder on
frames of every link type), and one per message the project consumes: ``packets``
(PacketBatch / PacketEvent, the worker's enrich agent), ``enriched`` (the sink), ``partials``
(the count agent), ``windows`` (the merge agent) and ``records`` (Alert, SensorHealth,
DeadLetter). The rule every harness checks: an input ends in a :class:`core.errors.DarkscopeError`
or in nothing, never another exception, and within :data:`fuzz.runner.BOUND_S` seconds.

``python -m fuzz.run_all --runs N`` (``make fuzz``) runs every harness; ``python -m fuzz.pcap
--runs N`` one. A crasher is written to ``.darkscope/fuzz/<target>/``; copy it to
``tests/data/fuzz/<target>/`` and ``tests/fuzz/test_regressions.py`` replays it in ``make test``.
"""
