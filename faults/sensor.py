"""A sensor process replaying a simulated stretch at a fixed rate (``python -m faults.sensor``).

``darkscope simulate --kafka`` publishes as fast as the broker takes it: a fault injected "mid
stream" would land after the last batch. This one paces the same simulation (batches per
second) so that packets are still flowing when a fault strikes, and writes the ground truth
first, so that a checker knows what was sent even when the sensor is still running.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from core.settings import KafkaSettings, SensorSettings, TopicNames
from producers.run import _signals_stop
from producers.sensor import Sensor
from producers.sim.simulate import simulate_quarter
from schemas.batch import PacketBatch

__all__ = ["paced", "main"]

logger = logging.getLogger(__name__)

PREFIX = "198.51.100.0/24"


def paced(batches: Iterable[PacketBatch], per_second: float) -> Iterator[PacketBatch]:
    """The batches, at most ``per_second`` of them a second (0: unpaced)."""
    t0 = time.monotonic()
    for i, batch in enumerate(batches):
        if per_second > 0:
            wait = t0 + i / per_second - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        yield batch


def main(argv: list[str] | None = None) -> int:
    """Simulate, write the truth, publish paced; exit 1 when Kafka refused a batch."""
    ap = argparse.ArgumentParser(prog="python -m faults.sensor", description=__doc__)
    ap.add_argument("--quarter", default="2022Q2")
    ap.add_argument("--days", type=int, default=1)
    ap.add_argument("--packets-per-day", type=int, default=20_000)
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--rate", type=float, default=10.0, help="batches per second (0: unpaced)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sensor-id", default="sim-faults")
    ap.add_argument("--truth", type=Path, required=True)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    sim = simulate_quarter(
        args.quarter,
        packets_per_day=args.packets_per_day,
        days=args.days,
        seed=args.seed,
        batch_size=args.batch_size,
        prefix=[PREFIX],
        sensor_id=args.sensor_id,
    )
    sim.write_ground_truth(args.truth)  # generates every day once; iterating regenerates them
    settings = SensorSettings(sensor_id=args.sensor_id, prefixes=[PREFIX], batch_size=args.batch_size)
    sensor = Sensor(settings, KafkaSettings(), TopicNames())
    with _signals_stop(sensor.stop):
        report = sensor.run(paced(sim, args.rate), f"simulate:{args.quarter}")
    for line in report.lines():
        sys.stdout.write(line + "\n")
    return 1 if report.send_failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
