"""``make faults``: every fault scenario on the suite's own broker, then the table.

The broker listens on 127.0.0.1:29092 (``--port``) with its data folder on a small tmpfs
mounted for the run (``--disk-mb``; the disk-full scenario fills it), never the shared test
broker. Exit status 1 when a scenario lost, doubled, raised an alert twice or missed a dead
letter.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from core import broker as broker_mod
from core.settings import BrokerSettings
from faults.check import Verdict
from faults.pipeline import start_broker
from faults.scenarios import SCENARIOS, Scale, run_scenario

__all__ = ["main", "table"]

logger = logging.getLogger(__name__)


def table(rows: list[Verdict], skipped: dict[str, str]) -> str:
    """The Markdown table ``make faults`` prints (and the README shows)."""
    head = (
        "| scenario | recovered after | packets sent | lost (store / windows) | doubled (store / windows) "
        "| (day, port) cells where store and windows differ | alert records twice | dead letters |\n"
        "|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for v in rows:
        rec = f"{v.recovered_s:.0f} s" if v.recovered_s is not None else "no"
        lines.append(
            f"| {v.scenario} | {rec} | {v.sent:,} | {v.store_lost} / {v.windows_lost} "
            f"| {v.store_doubled} / {v.windows_doubled} | {v.cells_differing} "
            f"| {v.alerts_twice} of {v.alerts} | {v.dead_expected - v.dead_missing} of {v.dead_expected} |"
        )
    for name, why in skipped.items():
        lines.append(f"| {name} | skipped: {why} | | | | | | |")
    return head + "\n".join(lines)


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _mount_tmpfs(path: Path, mb: int) -> str | None:
    """Mount a tmpfs of ``mb`` MiB on ``path``; the reason when it cannot be."""
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={mb}m", "tmpfs", str(path)],
        check=False,
        capture_output=True,
        text=True,
    )
    return None if proc.returncode == 0 else (proc.stderr.strip() or f"mount exited {proc.returncode}")


def main(argv: list[str] | None = None) -> int:
    """Run the scenarios (all, or ``--only`` some) and print the table."""
    ap = argparse.ArgumentParser(prog="python -m faults.run", description=__doc__)
    ap.add_argument("--only", action="append", default=[], help="a scenario name's start (repeatable)")
    ap.add_argument("--port", type=int, default=29092)
    ap.add_argument("--disk-mb", type=int, default=768)
    ap.add_argument("--days", type=int, default=Scale.days)
    ap.add_argument("--packets-per-day", type=int, default=Scale.packets_per_day)
    ap.add_argument("--rate", type=float, default=Scale.rate)
    ap.add_argument("--outage", type=float, default=Scale.outage_s)
    ap.add_argument("--root", type=Path, default=None, help="work folder (default: a temporary one)")
    args = ap.parse_args(argv)
    # SIGTERM (a CI timeout, a Ctrl-C'd make) unwinds like Ctrl-C: the processes this run
    # started, its broker and its tmpfs are stopped and unmounted in the finally blocks.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    scale = Scale(args.days, args.packets_per_day, args.rate, args.outage)
    root = args.root or Path(tempfile.mkdtemp(prefix="darkscope-faults-"))
    names = [n for n in SCENARIOS if not args.only or any(n.startswith(o) for o in args.only)]
    data_dir = root / "kafka"
    why_no_tmpfs = _mount_tmpfs(data_dir, args.disk_mb)
    skipped: dict[str, str] = {}
    if why_no_tmpfs:
        skipped = {n: f"no tmpfs for the broker ({why_no_tmpfs})" for n in names if "disk full" in n}
        names = [n for n in names if n not in skipped]
    broker = BrokerSettings(port=args.port, data_dir=data_dir, heap="512M")
    rows: list[Verdict] = []
    _say(f"faults: broker on 127.0.0.1:{args.port}, work folder {root}")
    try:
        start_broker(broker)
        for name in names:
            t0 = time.monotonic()
            start_broker(broker)  # up again, whatever the scenario before left
            v = run_scenario(name, root, broker, scale)
            rows.append(v)
            state = "ok" if v.ok else "FAILED"
            _say(f"{name}: {state} in {time.monotonic() - t0:.0f} s ({v.note})")
    finally:
        broker_mod.stop(broker)
        if not why_no_tmpfs:
            subprocess.run(["umount", "-l", str(data_dir)], check=False)
    _say(table(rows, skipped))
    ok = all(v.ok for v in rows)
    if ok and args.root is None:
        shutil.rmtree(root, ignore_errors=True)
    else:
        _say(f"logs and stores kept in {root}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
