"""Run one harness under atheris (libFuzzer): ``python -m fuzz.runner TARGET --runs N``.

The harness module is imported inside ``atheris.instrument_imports`` so that the darkscope
code it calls (``producers``, ``schemas``, ``sinks``, ``streams``) reports the branches an
input took, which is what makes the fuzzing coverage-guided. Its corpus starts from the
harness's own ``seeds()`` and lives in ``.darkscope/fuzz/TARGET/corpus``; libFuzzer writes any
crasher beside it (``crash-*``, ``timeout-*``) and the run ends with a non-zero status.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from core.errors import DarkscopeError

__all__ = ["BOUND_S", "SlowInput", "TARGETS", "guarded", "load", "main"]

# Seconds one input may take. Inputs are at most ``max_len`` bytes (64 KiB); the slowest of
# the documented runs (README, "Fuzzing") took 359 ms on a shared, loaded core.
BOUND_S = 1.0
TARGETS = ("pcap", "pcapng", "decode", "packets", "enriched", "partials", "windows", "records")
WORKDIR = Path(".darkscope") / "fuzz"
_INSTRUMENTED = ["fuzz", "producers", "schemas", "sinks", "streams"]


class SlowInput(AssertionError):
    """An input that took longer than the bound (not a DarkscopeError: a finding)."""


def guarded(
    check: Callable[[bytes], object], bound: float = BOUND_S, slowest: Path | None = None
) -> Callable[[bytes], None]:
    """``check`` as a fuzz target: darkscope's own errors are the expected outcome of bad
    input; any other exception, or an input slower than ``bound`` seconds, is a finding.
    ``slowest`` is rewritten with the time and size of each new slowest input (libFuzzer
    reports times only in whole seconds)."""
    worst = 0.0

    def one_input(data: bytes) -> None:
        nonlocal worst
        started = time.perf_counter()
        with contextlib.suppress(DarkscopeError):
            check(data)
        took = time.perf_counter() - started
        if took > bound:
            raise SlowInput(f"input of {len(data)} bytes took {took:.3f} s (bound {bound} s)")
        if took > worst:
            worst = took
            if slowest is not None:
                slowest.write_text(f"{took:.6f} {len(data)}\n")

    return one_input


def load(target: str) -> ModuleType:
    """The harness module ``fuzz.<target>`` (a ``check`` and a ``seeds`` function)."""
    if target not in TARGETS:
        raise SystemExit(f"unknown target {target!r}; one of {', '.join(TARGETS)}")
    return importlib.import_module(f"fuzz.{target}")


def _write_seeds(module: ModuleType, corpus: Path) -> int:
    corpus.mkdir(parents=True, exist_ok=True)
    seeds: list[bytes] = module.seeds()
    for seed in seeds:
        (corpus / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
    return len(seeds)


def main(argv: list[str] | None = None) -> None:
    """Fuzz one target for ``--runs`` inputs (libFuzzer's flags may follow ``--``)."""
    parser = argparse.ArgumentParser(prog="python -m fuzz.runner", description=__doc__)
    parser.add_argument("target", choices=TARGETS)
    parser.add_argument("--runs", type=int, default=10_000, help="inputs to run (libFuzzer -runs)")
    parser.add_argument("--seed", type=int, default=1, help="libFuzzer's random seed (0: random)")
    parser.add_argument("--max-len", type=int, default=65_536, help="largest input in bytes")
    parser.add_argument("--workdir", type=Path, default=WORKDIR, help="corpus and crashers go here")
    parser.add_argument("libfuzzer", nargs="*", help="more libFuzzer flags, after --")
    args = parser.parse_args(argv)

    import atheris  # type: ignore[import-untyped]

    logging.disable(logging.CRITICAL)  # bad input is logged by the readers; not worth it here
    with atheris.instrument_imports(include=_INSTRUMENTED):
        module = load(args.target)
    where = args.workdir / args.target
    n = _write_seeds(module, where / "corpus")
    print(f"fuzz {args.target}: {n} seeds, {args.runs} runs, bound {BOUND_S} s per input", flush=True)
    flags = [
        f"-runs={args.runs}",
        f"-seed={args.seed}",
        f"-max_len={args.max_len}",
        "-timeout=10",  # libFuzzer's own backstop (whole seconds); guarded() enforces BOUND_S
        "-rss_limit_mb=2048",
        "-print_final_stats=1",
        f"-artifact_prefix={where}/",
        *args.libfuzzer,
        str(where / "corpus"),
    ]
    atheris.Setup([sys.argv[0], *flags], guarded(module.check, slowest=where / "slowest.txt"))
    atheris.Fuzz()


if __name__ == "__main__":
    main()
