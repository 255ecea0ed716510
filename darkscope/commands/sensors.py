"""`darkscope sensor` (capture files or an interface) and `darkscope simulate` (a simulated quarter)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

import click

from core.settings import KafkaSettings, SensorSettings, TopicNames
from darkscope.options import (
    SIM_SENSOR_ID,
    bootstrap_option,
    build,
    packets_per_day_option,
    prefix_option,
    quarter_option,
    sensor_id_option,
)

__all__ = ["sensor", "simulate"]

DARKNET = "198.51.100.0/24"  # the simulator's own default (TEST-NET-2: never a real destination)


@click.command()
@click.option(
    "--pcap",
    "pcaps",
    multiple=True,
    type=str,
    metavar="FILE",
    help="Capture file to replay (repeatable; pcap/pcapng, gzip ok; - for stdin).",
)
@click.option("--iface", type=str, default=None, help="Interface to capture from (libpcap).")
@click.option("--bpf", type=str, default="", help="BPF filter for --iface.")
@click.option(
    "--realtime", is_flag=True, help="Replay files at capture speed instead of as fast as possible."
)
@sensor_id_option()
@prefix_option
@bootstrap_option
def sensor(
    pcaps: tuple[str, ...],
    iface: str | None,
    bpf: str,
    realtime: bool,
    sensor_id: str | None,
    prefixes: tuple[str, ...],
    bootstrap: str | None,
) -> None:
    """Capture packets (files or an interface) and publish them to Kafka."""
    from producers.run import replay_files, sniff_interface

    if bool(pcaps) == bool(iface):
        raise click.UsageError("give either --pcap FILE... or --iface IFACE")
    settings = build(SensorSettings, sensor_id=sensor_id, prefixes=prefixes)
    kafka, topics = build(KafkaSettings, bootstrap=bootstrap), build(TopicNames)
    if pcaps:
        reports = replay_files(list(pcaps), settings, kafka, topics, realtime)
    else:
        assert iface is not None
        reports = [sniff_interface(iface, bpf, settings, kafka, topics)]
    for report in reports:
        for line in report.lines():
            click.echo(line)
    if any(r.send_failed for r in reports):
        sys.exit(1)


@click.command()
@quarter_option(default="2022Q2")
@packets_per_day_option(100_000)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=None,
    metavar="DIR",
    help="Folder of the capture files and ground-truth JSON (with --kafka: the ground truth).",
)
@click.option("--kafka", "to_kafka", is_flag=True, help="Publish to Kafka instead of writing captures.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["pcap", "pcapng"]),
    default="pcap",
    show_default=True,
    help="Capture file format.",
)
@click.option(
    "--previous", is_flag=True, help="Also simulate the quarter before (for previous-quarter ranks)."
)
@click.option("--days", type=click.IntRange(min=1), default=None, metavar="N", help="Only the first N days.")
@click.option("--flat", is_flag=True, help="A control quarter: same volumes, no planted events.")
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    metavar="N",
    default=0,
    show_default=True,
    help="Random seed: the same arguments give the same packets.",
)
@click.option(
    "--darknet",
    "darknets",
    multiple=True,
    metavar="CIDR",
    help="IPv4 prefix the simulated traffic is sent to (repeatable); with --kafka also the "
    f"prefix the simulated sensor monitors.  [default: {DARKNET}]",
)
# The old spelling of --darknet: `--prefix` now means the monitored prefix of `darkscope sensor`.
@click.option("--prefix", "prefix", multiple=True, hidden=True, deprecated="Use --darknet.")
@sensor_id_option(default_text=SIM_SENSOR_ID)
@bootstrap_option
def simulate(
    quarter: str,
    packets_per_day: int,
    out_dir: Path | None,
    to_kafka: bool,
    fmt: Literal["pcap", "pcapng"],
    previous: bool,
    days: int | None,
    flat: bool,
    seed: int,
    darknets: tuple[str, ...],
    prefix: tuple[str, ...],
    sensor_id: str | None,
    bootstrap: str | None,
) -> None:
    """Simulate a quarter of darknet traffic: capture files, or straight to Kafka."""
    from producers.sim.model import VolumePlan

    darknet = [*darknets, *prefix] or [DARKNET]
    settings = build(SensorSettings, sensor_id=sensor_id)
    if "sensor_id" not in settings.model_fields_set:  # neither --sensor-id nor the environment
        settings = settings.model_copy(update={"sensor_id": SIM_SENSOR_ID})
    quarters = [quarter]
    if previous:
        prev = VolumePlan(quarter, packets_per_day).model.previous
        if prev is None:
            raise click.UsageError(f"no model for the quarter before {quarter}")
        quarters.insert(0, prev)
    if to_kafka:
        _publish(
            settings.model_copy(update={"prefixes": darknet}),
            bootstrap,
            quarters,
            out_dir,
            packets_per_day=packets_per_day,
            days=days,
            flat=flat,
            seed=seed,
        )
        return
    if out_dir is None:
        raise click.UsageError("give --out DIR (capture files) or --kafka")
    from darkscope.progress import quarter_bars
    from producers.sim.simulate import run_simulation

    expected = {q: packets_per_day * len(VolumePlan(q, packets_per_day).days[:days]) for q in quarters}
    with quarter_bars(expected) as bars:
        result = run_simulation(
            out_dir,
            quarter=quarter,
            packets_per_day=packets_per_day,
            fmt=fmt,
            previous=previous,
            days=days,
            flat=flat,
            seed=seed,
            sensor_id=settings.sensor_id,
            progress=bars,
            prefix=darknet,
        )
    click.echo(
        f"simulated {result.packets} packets in {len(result.captures)} files in {result.seconds:.1f} s"
    )
    for truth in result.truths:
        click.echo(f"  ground truth: {truth}")


def _publish(
    settings: SensorSettings,
    bootstrap: str | None,
    quarters: list[str],
    out_dir: Path | None,
    *,
    packets_per_day: int,
    days: int | None,
    flat: bool,
    seed: int,
) -> None:
    """`simulate --kafka`: publish each quarter as the simulated sensor would."""
    from producers.run import publish_simulation

    kafka, topics = build(KafkaSettings, bootstrap=bootstrap), build(TopicNames)
    for q in quarters:
        truth = out_dir / q / "ground-truth.json" if out_dir else None
        if truth:
            truth.parent.mkdir(parents=True, exist_ok=True)
        report, _ = publish_simulation(
            settings,
            kafka,
            topics,
            quarter=q,
            packets_per_day=packets_per_day,
            days=days,
            flat=flat,
            seed=seed,
            truth_path=truth,
        )
        for line in report.lines():
            click.echo(line)
        if truth:
            click.echo(f"  ground truth: {truth}")
