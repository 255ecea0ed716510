"""``make fuzz``: every harness in turn (or ``--jobs`` at a time), each for ``--runs`` inputs,
and a table of what they did: inputs, seconds, inputs/s, the slowest input, findings.

Each harness runs in processes of its own (libFuzzer exits the process when it is done), one
per ``--slice`` inputs, each going on from the corpus the ones before grew: under atheris a
harness's memory grows with the inputs it ran (~10 KiB each for the capture harnesses; the
same loop without atheris stays flat), and libFuzzer stops a process at 2 GiB. The run
fails when any harness finds an input ending in an exception that is not a darkscope error,
or slower than the bound; the crasher's path is printed, and belongs in
``tests/data/fuzz/<target>/`` once fixed.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from fuzz.runner import BOUND_S, TARGETS, WORKDIR

__all__ = ["main"]

_DONE = re.compile(r"Done (\d+) runs in (\d+) second")
_ARTIFACT = re.compile(r"Test unit written to (\S+)")


@dataclass(frozen=True)
class Outcome:
    """One harness run."""

    target: str
    runs: int
    seconds: float
    slowest_ms: float
    ok: bool
    log: Path
    artifact: str


def _run(target: str, runs: int, seed: int, workdir: Path, slice_runs: int) -> Outcome:
    where = workdir / target
    where.mkdir(parents=True, exist_ok=True)
    log = where / "fuzz.log"
    log.unlink(missing_ok=True)
    slowest_file = where / "slowest.txt"
    done_runs, slowest, started = 0, 0.0, time.monotonic()
    for part in range(max(-(-runs // slice_runs), 1)):
        n = min(slice_runs, runs - done_runs)
        slowest_file.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "fuzz.runner", target, f"--runs={n}", f"--seed={seed + part}"]
        cmd.append(f"--workdir={workdir}")
        with log.open("ab") as out:
            rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False).returncode
        text = log.read_text(errors="replace")
        done = _DONE.findall(text)
        if slowest_file.exists():
            slowest = max(slowest, float(slowest_file.read_text().split()[0]))
        if rc != 0 or len(done) != part + 1:
            artifact = _ARTIFACT.findall(text)
            found = artifact[-1] if artifact else ""
            return Outcome(target, done_runs, time.monotonic() - started, slowest * 1000, False, log, found)
        done_runs += int(done[-1][0])
    return Outcome(target, done_runs, time.monotonic() - started, slowest * 1000, True, log, "")


def main(argv: list[str] | None = None) -> int:
    """Fuzz every target; 0 when none found anything."""
    parser = argparse.ArgumentParser(prog="python -m fuzz.run_all", description=__doc__)
    parser.add_argument("--runs", type=int, default=125_000, help="inputs per target")
    parser.add_argument("--jobs", type=int, default=1, help="harnesses run at the same time")
    parser.add_argument("--seed", type=int, default=1, help="libFuzzer's random seed (of the first slice)")
    parser.add_argument("--slice", type=int, default=100_000, help="inputs per process")
    parser.add_argument("--workdir", type=Path, default=WORKDIR)
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated subset")
    args = parser.parse_args(argv)
    targets = [t for t in args.targets.split(",") if t]
    print(
        f"fuzzing {len(targets)} targets, {args.runs:,} inputs each, {args.jobs} at a time, "
        f"bound {BOUND_S} s per input",
        flush=True,
    )
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(args.jobs, 1)) as pool:
        outcomes = list(pool.map(lambda t: _run(t, args.runs, args.seed, args.workdir, args.slice), targets))
    print(f"{'target':10} {'inputs':>10} {'seconds':>8} {'inputs/s':>9} {'slowest':>9}  result")
    for o in outcomes:
        rate = o.runs / o.seconds if o.seconds else 0.0
        result = "ok" if o.ok else f"FOUND: {o.artifact or 'see ' + str(o.log)}"
        print(f"{o.target:10} {o.runs:>10,} {o.seconds:>8.0f} {rate:>9,.0f} {o.slowest_ms:>7.1f}ms  {result}")
    total = sum(o.runs for o in outcomes)
    elapsed = time.monotonic() - started
    bad = [o for o in outcomes if not o.ok]
    print(f"total: {total:,} inputs in {elapsed:.0f} s, {len(bad)} targets with findings")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
