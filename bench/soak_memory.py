"""Soak: a simulated week replayed at a fixed rate through a real worker and sink, their
resident memory sampled as it runs; then one week-long capture file replayed by the sensor.

1. The pipeline as processes (the fault suite's :class:`faults.pipeline.Pipeline`: fresh topics
   on the broker of ``DARKSCOPE_BOOTSTRAP``, one ``darkscope worker``, one ``darkscope sink``
   into chDB) and the paced simulated sensor (``faults.sensor``) replaying ``--days`` days at
   ``--rate`` batches a second: a week compressed into a few minutes. The worker's and the
   sink's RSS (``/proc/PID/status``) are sampled every ``--every`` seconds until the sink has
   stored every batch. Printed: the RSS after the first simulated day (warm-up), at the end,
   and the least-squares slope over the simulated days after warm-up (MiB per simulated day).
2. One capture file of ``--days`` days (``producers.pcapwriter``) replayed by ``darkscope
   sensor --pcap``: its RSS at a quarter, half, three quarters and the end of the replay, and its
   peak (imports and the first batches are in the first quarter).

    .venv/bin/python bench/soak_memory.py [--days 7] [--packets-per-day 40000] [--rate 4]
        [--pcap-packets-per-day 1000000] [--every 2] [--only pipeline|sensor]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from core.broker import process_rss
from core.settings import KafkaSettings
from faults import observe
from faults.pipeline import Pipeline, wait_until
from producers.pcapwriter import PcapWriter
from producers.sim.simulate import simulate_quarter

BATCH = 500  # packets per batch of the paced sensor
MIB = 1 << 20


def curve(samples: list[tuple[float, int]], warmup_day: float, days_sent: int) -> tuple[float, float, float]:
    """(warm-up RSS, final RSS, slope per day) in MiB of (simulated day, RSS) samples; the slope
    is fitted over the samples from ``warmup_day`` to the last day sent (not the drain after)."""
    days = np.array([d for d, _ in samples])
    mem = np.array([r for _, r in samples], dtype=np.float64) / MIB
    after = (days >= warmup_day) & (days < days_sent)
    warm = float(mem[after][0]) if after.any() else float(mem[-1])
    slope = float(np.polyfit(days[after], mem[after], 1)[0]) if after.sum() >= 3 else float("nan")
    return warm, float(mem[-1]), slope


def _slope(value: float) -> str:
    """A fitted slope, or why there is none."""
    return "n/a (under 3 samples)" if np.isnan(value) else f"{value:+.2f}"


def day_ends(samples: list[tuple[float, int]], days: int) -> str:
    """The RSS (MiB) of the last sample of each simulated day, and after the drain."""
    out = []
    for day in range(1, days + 1):
        inside = [r for d, r in samples if day - 1 <= d < day]
        if inside:
            out.append(f"{inside[-1] / MIB:.0f}")
    return " ".join(out) + f", drained {samples[-1][1] / MIB:.0f}"


def soak_pipeline(root: Path, bootstrap: str, args: argparse.Namespace) -> None:
    """Part 1: the worker's and the sink's memory over a simulated week."""
    p = Pipeline(root, bootstrap, "soak")
    per_day = args.packets_per_day / BATCH  # batches per simulated day
    samples: dict[str, list[tuple[float, int]]] = {"worker": [], "sink": []}
    try:
        p.start_worker()
        p.start_sink()
        wait_until("the worker to be ready", lambda: "Ready" in p.log("worker"), 300)
        p.start_sensor(args.days, args.packets_per_day, args.rate)
        t0 = time.monotonic()
        drained = False
        last_check = t0
        while not drained:
            time.sleep(args.every)
            now = time.monotonic()
            day = min((now - t0) * args.rate / per_day, float(args.days))
            for name, series in samples.items():
                if not p.alive(name):
                    raise SystemExit(f"the {name} exited; see {p.root / (name + '.log')}")
                value = process_rss(p.pid(name))
                if value is not None:
                    series.append((day, value))
            if not p.alive("sensor") and now - last_check >= 5:
                last_check = now
                sent = set(observe.sent_batches(bootstrap, p.topics.packets))
                stored = observe.sink_stored_batches(bootstrap, p.sink_group, p.topics.enriched)
                drained = bool(sent) and sent <= stored
            if now - t0 > args.timeout:
                raise SystemExit(f"not drained within {args.timeout:.0f} s; logs in {p.root}")
        took = time.monotonic() - t0
    finally:
        p.close()
        p.drop_topics()
    packets = args.days * args.packets_per_day
    print(
        f"{args.days} simulated days, {packets:,} packets in batches of {BATCH} at {args.rate:g} "
        f"batches/s: replayed and stored in {took:.0f} s, RSS sampled every {args.every:g} s"
    )
    half = args.days / 2
    for name, series in samples.items():
        warm, final, slope = curve(series, 1.0, args.days)
        late = curve(series, half, args.days)[2]
        print(
            f"{name} RSS: warm-up {warm:.0f} MiB (after day 1), final {final:.0f} MiB, "
            f"slope {slope:+.1f} MiB per simulated day after day 1, {_slope(late)} over days "
            f"{half:g}-{args.days} ({len(series)} samples)"
        )
        print(f"{name} RSS at the end of each simulated day (MiB): {day_ends(series, args.days)}")


def soak_sensor(root: Path, bootstrap: str, args: argparse.Namespace) -> None:
    """Part 2: the sensor's memory replaying one long capture file."""
    path = root / "week.pcap"
    sim = simulate_quarter(
        "2022Q2",
        packets_per_day=args.pcap_packets_per_day,
        days=args.days,
        seed=1,
        batch_size=10_000,
        prefix=["198.51.100.0/24"],
        sensor_id="soak-pcap",
    )
    packets = 0
    with PcapWriter(path) as writer:
        for batch in sim:
            packets += writer.write(batch)
    p = Pipeline(root, bootstrap, "soak-pcap")
    try:
        proc = p.spawn(
            "sensor",
            [
                "-m",
                "darkscope",
                "sensor",
                "--pcap",
                str(path),
                "--sensor-id",
                "soak-pcap",
                "--prefix",
                "198.51.100.0/24",
            ],
        )
        t0 = time.monotonic()
        series: list[tuple[float, int]] = []
        while proc.poll() is None:
            value = process_rss(proc.pid)
            if value is not None:
                series.append((time.monotonic() - t0, value))
            time.sleep(0.2)
    finally:
        p.close()
        p.drop_topics()
    if proc.returncode or not series:
        raise SystemExit(f"the sensor exited with {proc.returncode}; see {p.root / 'sensor.log'}")
    took = series[-1][0]
    tenths = [next(r for t, r in series if t >= took * q / 10) / MIB for q in range(1, 11)]
    peak = max(r for _, r in series)
    # The replay's time stands in for the capture's days (packets are read at an even pace).
    late = curve([(t / took * args.days, r) for t, r in series], args.days / 2, args.days + 1)[2]
    print(
        f"sensor replaying one {path.stat().st_size / MIB:.0f} MiB capture of {args.days} days "
        f"({packets:,} packets) in {took:.0f} s ({len(series)} samples): RSS at each tenth of the "
        f"replay {' '.join(f'{m:.0f}' for m in tenths)} MiB, peak {peak / MIB:.0f} MiB, slope over "
        f"the second half {_slope(late)} MiB per day of capture"
    )


def main() -> None:
    """Both parts, in a temporary folder."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--packets-per-day", type=int, default=40_000)
    ap.add_argument("--rate", type=float, default=4.0, help="packet batches a second")
    ap.add_argument("--pcap-packets-per-day", type=int, default=1_000_000)
    ap.add_argument("--every", type=float, default=2.0, help="seconds between RSS samples")
    ap.add_argument("--timeout", type=float, default=1800.0)
    ap.add_argument("--only", choices=("pipeline", "sensor"), help="run one part")
    args = ap.parse_args()
    bootstrap = KafkaSettings().bootstrap
    with tempfile.TemporaryDirectory(prefix="darkscope-soak-") as tmp:
        if args.only != "sensor":
            soak_pipeline(Path(tmp), bootstrap, args)
        if args.only != "pipeline":
            soak_sensor(Path(tmp), bootstrap, args)


if __name__ == "__main__":
    main()
