"""Entry points behind `darkscope sensor` and `darkscope simulate --kafka`: wire a source to a
:class:`producers.sensor.Sensor`, with SIGINT/SIGTERM ending the run cleanly (flushed)."""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from core.settings import KafkaSettings, SensorSettings, TopicNames
from producers.sensor import CaptureCounters, Sensor, SensorReport

__all__ = ["publish_simulation", "replay_files", "sniff_interface"]

logger = logging.getLogger(__name__)


@contextmanager
def _signals_stop(*stoppers: Callable[[], None]) -> Iterator[None]:
    """SIGINT and SIGTERM call the stoppers instead of killing the process mid-batch."""

    def handler(signum: int, _frame: Any) -> None:
        logger.warning("signal %d: finishing the batch in hand, flushing, stopping", signum)
        for stop in stoppers:
            stop()

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def replay_files(
    paths: Sequence[str],
    settings: SensorSettings,
    kafka: KafkaSettings,
    topics: TopicNames,
    realtime: bool = False,
) -> list[SensorReport]:
    """Publish pcap/pcapng files (or ``-`` for stdin) one after another."""
    from producers.capture import open_capture

    sensor = Sensor(settings, kafka, topics)
    reports = []
    with _signals_stop(sensor.stop):
        for path in paths:
            with open_capture(path, batch_size=settings.batch_size, sensor_id=settings.sensor_id) as cap:

                def counters(cap: Any = cap) -> CaptureCounters:
                    return CaptureCounters(cap.stats.frames, 0, cap.stats.malformed.copy())

                report = sensor.run(cap, f"pcap:{path}", counters, realtime=realtime)
                logger.info("%s", cap.stats.summary())
            reports.append(report)
            if report.stopped_by_signal:
                break
    return reports


def sniff_interface(
    iface: str, bpf: str, settings: SensorSettings, kafka: KafkaSettings, topics: TopicNames
) -> SensorReport:
    """Capture from ``iface`` until SIGINT/SIGTERM."""
    from producers.live import LiveCapture

    live = LiveCapture(
        iface,
        bpf,
        settings.snaplen,
        settings.promiscuous,
        settings.buffer_mb,
        settings.batch_size,
        settings.linger,
        settings.sensor_id,
    )
    sensor = Sensor(settings, kafka, topics)

    def counters() -> CaptureCounters:
        st = live.stats
        return CaptureCounters(st.frames, st.kernel_dropped + st.interface_dropped, st.malformed.copy())

    with _signals_stop(live.stop):
        return sensor.run(live, f"iface:{iface}", counters)


def publish_simulation(
    settings: SensorSettings,
    kafka: KafkaSettings,
    topics: TopicNames,
    *,
    quarter: str,
    packets_per_day: int,
    days: int | None,
    flat: bool,
    seed: int,
    truth_path: Path | None,
    geo_db: Path | None = None,
    cache_dir: Path | None = None,
) -> tuple[SensorReport, Any]:
    """Publish a simulated quarter straight to Kafka; write its ground truth when asked."""
    from producers.sim.simulate import simulate_quarter

    prefixes = settings.prefixes or ["198.51.100.0/24"]
    sim = simulate_quarter(
        quarter,
        packets_per_day=packets_per_day,
        prefix=prefixes,
        sensor_id=settings.sensor_id,
        seed=seed,
        flat=flat,
        days=days,
        geo_db=geo_db,
        batch_size=settings.batch_size,
        cache_dir=cache_dir,
    )
    sensor = Sensor(settings.model_copy(update={"prefixes": prefixes}), kafka, topics)
    with _signals_stop(sensor.stop):
        report = sensor.run(sim, f"simulate:{quarter}")
    truth = sim.ground_truth()
    if truth_path is not None:
        sim.write_ground_truth(truth_path)
    return report, truth
