"""Every benchmark in bench/ runs at a tiny size and prints its figures, so that a bench broken
by a change elsewhere (an import moved, an argument renamed) fails here rather than on the next
person who runs it. Exit status and the figure lines only: nothing about speed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"


@dataclass(frozen=True)
class Smoke:
    """One bench run at a tiny size: its arguments and the lines its figures must be on."""

    script: str
    args: tuple[str, ...]
    figures: tuple[str, ...]  # regular expressions, each matching a whole line of stdout
    absent: tuple[str, ...] = ()  # lines the bench prints when its own run went wrong


OFFLINE = [
    Smoke(
        "fingerprint_rates.py",
        ("--sim-packets", "5000"),
        (
            r".*confirm at once from 20 bits of evidence.*",
            r".*masscan +false matches on the negative controls: \d+ of [\d,]+ packets.*",
        ),
    ),
    Smoke(
        "fingerprint_memory.py",
        ("--sources", "30000", "--capacity", "20000"),
        (
            r" +30,000 sources fed, +20,000 tracked: +\d+ MiB held \(\d+ bytes a source\), "
            r"peak \d+ MiB, RSS \d+ MiB",
            r"[\d.]+ M sources/s folded in \(tracemalloc on\)",
        ),
    ),
    Smoke(
        "codec.py",
        ("--packets", "20000", "--batch", "5000", "--record-packets", "2000", "--repeat", "1"),
        (
            r"columnar batches: 4 x 5000 packets, [\d.]+ bytes/packet",
            r"per-record events: 2000 records, [\d.]+ bytes/packet",
            r"encode +columnar +[\d.]+ M packets/s +per-record +[\d.]+ M/s +ratio +[\d.]+x",
            r"decode +columnar +[\d.]+ M packets/s +per-record +[\d.]+ M/s +ratio +[\d.]+x",
        ),
    ),
    Smoke(
        "count_memory.py",
        ("--partitions", "2", "--hour-sources", "1000", "--day-sources", "500", "--hours", "6"),
        (
            r" +1,000 distinct sources in an hour: peak RSS +\d+ MiB, settled +\d+ MiB .*",
            r" +after hour +6: RSS +\d+ MiB",
            r"a day of 500 distinct sources an hour: peak RSS \d+ MiB; hours 6-6 min \d+ / max \d+ MiB .*",
        ),
    ),
    Smoke(
        "geo.py",
        ("--packets", "20000", "--sources", "2000", "--reference-packets", "2000", "--repeat", "1"),
        (
            r"stream: 20,000 packets in batches of 10,000; .*",
            r"enrich +cold +[\d,]+ pkt/s \(cache hits [\d.]+%\)",
            r"enrich +warm +[\d,]+ pkt/s \(cache hits [\d.]+%\)",
            r"geoip2 city\(\) per packet +[\d,]+ +1\.0x",
            r"maxminddb get\(\) per packet +[\d,]+ +[\d.]+x",
        ),
    ),
    Smoke(
        "parse.py",
        ("--packets", "5000", "--repeat", "1", "--dpkt-packets", "1000"),
        (
            r"file: \d+ records, [\d.]+ MB, replicated from .*",
            r"darkscope  file -> PacketBatch: [\d.]+ s wall, [\d.]+ s CPU: .*",
            r"tcpdump.*",  # its figures, or that it is not installed
            r"dpkt.*",
        ),
    ),
    Smoke(
        "simulate.py",
        ("--packets-per-day", "2000", "--days", "1", "--write-days", "1"),
        (
            r"geo ranges: cold [\d.]+ s .*",
            r"generate 1 days x 2,000/day: [\d,]+ packets in \d+ batches, .* M packets/s",
            r"ground truth: [\d.]+ s, [\d.]+ MB of JSON",
            r"encode pcap: [\d,]+ packets in .* M packets/s, .*",
            r"encode pcapng: [\d,]+ packets in .* M packets/s, .*",
        ),
    ),
    Smoke(
        "alerts_quarters.py",
        ("--days", "1", "--packets-per-day", "2000", "--partitions", "2"),
        (
            r"[\d,]+ packets, \d+ alerts \(\d+ s\)",
            r"2022Q2: \d+ alert records, \d+ alerts; by severity .*",
            r"planted DoS episodes: (\d+); with an alert: \1; as exactly one episode id: \1; .*",
        ),
    ),
    Smoke(
        "stream_stages.py",
        ("--days", "1", "--packets-per-day", "2000", "--partitions", "2"),
        (
            r"\d+ packets in \d+ batches, \d+ windows published, 2 counts partitions",
            r" +merge windows +[\d.]+ µs/packet",
            r"all stages +[\d.]+ µs/packet = [\d.]+ M packets/s",
        ),
    ),
]

ON_THE_BROKER = [
    Smoke(
        "rebalance_soak.py",
        # One quick broker test once instead of the rebalance scenarios twenty times.
        ("-n", "1", "--tests", "tests/core/test_publisher.py", "-k", "created_once"),
        (r"run  1: exact in +\d+ s  1 passed, .*", r"1 of 1 exact", r"the workers. watch .*"),
    ),
    Smoke(
        "sensor.py",
        ("--packets", "5000", "--repeat", "1"),
        (
            r"capture: \d+ frames, \d+ IP packets .*",
            r"pcap -> parsed batches +[\d.]+ M packets/s .*",
            r"pcap -> acked Kafka messages +[\d.]+ M packets/s .*",
        ),
    ),
    Smoke(
        "sink.py",
        ("--rows", "4000", "--batch-size", "1000", "--batch-rows", "2000", "--repeat", "1"),
        (
            r"\d+ packets in \d+ enriched batches of ~1000, \d+ inserts of ~2000 rows .*",
            r"raw Native raw_insert, full schema .*: +[\d.]+ M rows/s",
            r"sink, enriched topic -> chDB, full schema: +[\d.]+ M rows/s",
            r"sink / raw \(same schema\): [\d.]+ .*",
        ),
        absent=(r"  sink run \d+: stored \d+ of \d+ rows!",),
    ),
    Smoke(
        "streams.py",
        ("--days", "1", "--packets-per-day", "2000", "--partitions", "2"),
        (
            r"\d+ packets in \d+ batches, 2 partitions, one worker process",
            r"bare consume \+ decode loop +[\d.]+ M packets/s",
            r"worker enrich +[\d.]+ M packets/s .*",
            r"worker enrich \+ counts +[\d.]+ M packets/s .*",
            # The bench checks its own count; a tiny run must be exact too.
            r"packets in the sensor hour windows of the data: (\d+) of \1 sent \(exact\)",
        ),
    ),
    Smoke(
        "soak_memory.py",
        # Two days at one batch a second: 16 s of traffic, RSS sampled every half second.
        (
            "--days",
            "2",
            "--packets-per-day",
            "4000",
            "--rate",
            "1",
            "--every",
            "0.5",
            "--pcap-packets-per-day",
            "5000",
        ),
        (
            r"2 simulated days, 8,000 packets in batches of 500 at 1 batches/s: replayed and stored .*",
            r"worker RSS: warm-up \d+ MiB \(after day 1\), final \d+ MiB, slope [+-][\d.]+ MiB per .*",
            r"sink RSS: warm-up \d+ MiB \(after day 1\), final \d+ MiB, slope [+-][\d.]+ MiB per .*",
            r"worker RSS at the end of each simulated day \(MiB\): \d+ \d+, drained \d+",
            r"sensor replaying one \d+ MiB capture of 2 days \([\d,]+ packets\) in \d+ s "
            r"\(\d+ samples\): RSS at each tenth of the replay (\d+ ){10}MiB, peak \d+ MiB, .*",
        ),
    ),
]
# Modules the scripts import, not benchmarks themselves.
HELPERS = {"batches.py", "profiling.py"}


def _run(smoke: Smoke, env: dict[str, str], tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH / smoke.script), *smoke.args],
        cwd=tmp_path,  # whatever a bench leaves behind stays in the test's folder
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    said = f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0, said
    lines = proc.stdout.splitlines()
    for figure in smoke.figures:
        assert any(re.fullmatch(figure, line) for line in lines), f"no line matches {figure!r}\n{said}"
    for wrong in smoke.absent:
        assert not any(re.fullmatch(wrong, line) for line in lines), f"a line matches {wrong!r}\n{said}"


def test_every_bench_script_has_a_smoke_run() -> None:
    scripts = {p.name for p in BENCH.glob("*.py") if 'if __name__ == "__main__":' in p.read_text()}
    smoked = [s.script for s in OFFLINE + ON_THE_BROKER]
    assert len(smoked) == len(set(smoked))
    assert scripts == set(smoked)
    assert {p.name for p in BENCH.glob("*.py")} == scripts | HELPERS


@pytest.mark.parametrize("smoke", OFFLINE, ids=lambda s: s.script)
def test_bench_runs_at_a_tiny_size(smoke: Smoke, tmp_path: Path) -> None:
    _run(smoke, dict(os.environ), tmp_path)


@pytest.mark.broker
@pytest.mark.parametrize("smoke", ON_THE_BROKER, ids=lambda s: s.script)
def test_broker_bench_runs_at_a_tiny_size(smoke: Smoke, kafka_bootstrap: str, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DARKSCOPE_BOOTSTRAP": kafka_bootstrap,  # the benches' broker
        "DARKSCOPE_TEST_BOOTSTRAP": kafka_bootstrap,  # the soak's pytest reuses this session's
    }
    _run(smoke, env, tmp_path)
