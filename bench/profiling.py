"""py-spy for the benchmarks' ``--profile``: record a process into a speedscope file."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

__all__ = ["py_spy"]


@contextlib.contextmanager
def py_spy(pid: int, out: str | None, *options: str) -> Iterator[None]:
    """Record ``pid`` with py-spy into ``out`` (speedscope) while the block runs; nothing when
    ``out`` is None. py-spy writes its file on SIGINT, not SIGTERM."""
    if out is None:
        yield
        return
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    spy = subprocess.Popen(
        [
            exe,
            "record",
            "--pid",
            str(pid),
            "-f",
            "raw" if out.endswith(".txt") else "speedscope",
            "-o",
            out,
            *options,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(60)
