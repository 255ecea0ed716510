"""Soak: the multi-process rebalance scenarios, N times, and how many ended exact.

Runs ``tests/streams/test_rebalance.py`` (a worker joins mid-stream and the first one stops;
a worker is killed and another starts: real worker processes, the real broker) N times, each
in its own pytest process, and prints one line per run and "K of N exact". A failing run's
output and its temporary folders (the worker logs) are kept in ``--keep DIR`` (the test says
what it last saw: batches enriched, missing offsets, hours closed per kind). ``--tests`` and
``-k`` pick other tests to repeat (tests/bench/test_smoke.py runs one quick broker test once,
to see that the soak still runs).

    .venv/bin/python bench/rebalance_soak.py [-n 20] [--keep .darkscope/soak] [-k EXPR] [--tests PATH ...]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCENARIOS = "tests/streams/test_rebalance.py"
# What the workers' watch over Faust's consumer logged (streams.watch), counted per run.
WATCHED = {
    "commit held at offset": "commits held",
    "which reached no stream": "messages read again",
    "recovery received nothing": "recoveries sought again",
    "reached no stream here": "gaps read past Faust",
}


def _watch_lines(folder: Path) -> dict[str, int]:
    """How often each of the watch's warnings appears in a run's worker logs."""
    seen = dict.fromkeys(WATCHED.values(), 0)
    for log in folder.rglob("worker*.log"):
        for line in log.read_text(errors="replace").splitlines():
            for needle, what in WATCHED.items():
                seen[what] += needle in line
    return seen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=20, help="runs")
    ap.add_argument(
        "--keep", type=Path, default=REPO / ".darkscope" / "soak", help="folder for failed runs' output"
    )
    ap.add_argument("-k", default="", help="pytest -k expression (default: both scenarios)")
    ap.add_argument(
        "--tests",
        nargs="+",
        default=[SCENARIOS],
        metavar="PATH",
        help=f"test files or node ids to run instead (default: {SCENARIOS})",
    )
    args = ap.parse_args()
    args.keep.mkdir(parents=True, exist_ok=True)
    exact = 0
    watched = dict.fromkeys(WATCHED.values(), 0)
    for i in range(1, args.n + 1):
        t = time.monotonic()
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            *args.tests,
            # Each run's temporary folders (the worker logs among them) are kept for a failed
            # run: "exact" or not, the logs say which batch and which partition.
            f"--basetemp={args.keep / f'run{i}-tmp'}",
        ]
        if args.k:
            cmd += ["-k", args.k]
        run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
        ok = run.returncode == 0
        exact += ok
        tail = (run.stdout.strip().splitlines() or ["(no output)"])[-1]
        seen = _watch_lines(args.keep / f"run{i}-tmp")
        print(
            f"run {i:2d}: {'exact' if ok else 'FAILED'} in {time.monotonic() - t:5.0f} s  {tail}"
            + "".join(f"; {n} {what}" for what, n in seen.items() if n),
            flush=True,
        )
        for what, n in seen.items():
            watched[what] += n
        if not ok:
            (args.keep / f"run{i}.txt").write_text(run.stdout + run.stderr)
        else:
            shutil.rmtree(args.keep / f"run{i}-tmp", ignore_errors=True)
    print(f"{exact} of {args.n} exact")
    print(
        "the workers' watch (streams.watch) over all runs: "
        + ", ".join(f"{n} {w}" for w, n in watched.items())
    )


if __name__ == "__main__":
    main()
