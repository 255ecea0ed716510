"""Benchmark: capture file -> parsed columnar PacketBatch, against tcpdump and dpkt in the same run.

Builds a ~1M-packet pcap by replicating the records of a real capture (the shared
amp.TCP.reflection.SYNACK.pcap by default: Ethernet, TCP SYN-ACK / RST backscatter with
options, ICMP errors, UDP fragments, a few ARP frames), then times, on one core:

- darkscope: ``open_capture(file)`` until every PacketBatch is out (all header columns);
- ``tcpdump -r FILE -w /dev/null``: libpcap reading and writing the records, no parsing;
- dpkt 1.9.8: the usual per-packet Python parser, extracting the same header fields
  (timed on a slice of the file, its rate is per packet).

Prints medians and ratios; never asserts. ``--profile`` prints a pyinstrument profile of one
darkscope pass. Usage: ``python bench/parse.py [--packets 1000000] [--source some.pcap]``.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from producers.capture import open_capture
from producers.pcap import PCAP_HEADER_LEN, PcapReader


def default_source() -> Path | None:
    """The shared real capture, if present ($DARKSCOPE_SHARED_DIR or the shared folder beside the repo)."""
    env = os.environ.get("DARKSCOPE_SHARED_DIR")
    base = Path(env) if env else Path(__file__).resolve().parents[2] / "shared"
    path = base / "captures" / "amp.TCP.reflection.SYNACK.pcap"
    return path if path.is_file() else None


def synthetic_records() -> tuple[bytes, bytes]:
    """A pcap header and 1000 Ethernet/IPv4/TCP SYN records, when no real capture is at hand."""
    head = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    recs = []
    for i in range(1000):
        tcp = struct.pack(">HHIIBBHHH", 40000 + i, 23, i, 0, 0x60, 0x02, 1024, 0, 0) + bytes.fromhex(
            "020405b4"
        )
        ip = struct.pack(
            ">BBHHHBBHII", 0x45, 0, 20 + len(tcp), 54321, 0, 250, 6, 0, 0xC0000201 + i, 0xC6336407
        )
        frame = bytes(12) + b"\x08\x00" + ip + tcp
        recs.append(struct.pack("<IIII", 1_650_000_000 + i, 0, len(frame), len(frame)) + frame)
    return head, b"".join(recs)


def build_file(source: Path | None, packets: int, out: Path) -> int:
    """Write ``out`` with about ``packets`` records replicated from ``source``; return the count."""
    if source is None:
        head, body = synthetic_records()
        per = 1000
    else:
        data = source.read_bytes()
        head, body = data[:PCAP_HEADER_LEN], data[PCAP_HEADER_LEN:]
        reader, _ = PcapReader.from_start(data)
        per = len(reader.parse(body, PCAP_HEADER_LEN, True).frames)
    copies = max(1, round(packets / per))
    with out.open("wb") as f:
        f.write(head)
        for _ in range(copies):
            f.write(body)
    return copies * per


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (tcpdump runs as one)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def timed(fn: Callable[[], int], repeat: int) -> tuple[float, float, int]:
    """Median wall and CPU seconds of ``repeat`` runs, and what the function returned."""
    walls, cpus, result = [], [], 0
    for _ in range(repeat):
        t, c = time.perf_counter(), cpu_seconds()
        result = fn()
        walls.append(time.perf_counter() - t)
        cpus.append(cpu_seconds() - c)
    return statistics.median(walls), statistics.median(cpus), result


def darkscope_pass(path: Path) -> int:
    """Read the file to the last batch; return the number of packets."""
    return sum(len(b) for b in open_capture(path))


def tcpdump_pass(tcpdump: str, path: Path) -> int:
    subprocess.run([tcpdump, "-r", str(path), "-w", "/dev/null"], check=True, capture_output=True)
    return 0


def dpkt_pass(path: Path, limit: int) -> int:
    """Parse up to ``limit`` records with dpkt, keeping the same header fields darkscope keeps."""
    import dpkt  # type: ignore[import-untyped]

    cols: list[tuple[object, ...]] = []
    with path.open("rb") as f:
        for n, (ts, buf) in enumerate(dpkt.pcap.Reader(f)):
            if n >= limit:
                break
            eth = dpkt.ethernet.Ethernet(buf)
            ip = eth.data
            if not isinstance(ip, dpkt.ip.IP):
                continue
            l4 = ip.data
            row: tuple[object, ...] = (ts, ip.src, ip.dst, ip.p, ip.ttl, ip.id, ip.df, ip.mf, ip.offset)
            if isinstance(l4, dpkt.tcp.TCP):
                kinds = [k for k, _ in dpkt.tcp.parse_opts(l4.opts)]
                row += (l4.sport, l4.dport, l4.flags, l4.seq, l4.ack, l4.win, kinds)
            elif isinstance(l4, dpkt.udp.UDP):
                row += (l4.sport, l4.dport)
            elif isinstance(l4, dpkt.icmp.ICMP):
                row += (l4.type, l4.code)
            cols.append(row)
    return min(limit, n + 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=1_000_000, help="records in the generated pcap")
    parser.add_argument("--source", type=Path, default=None, help="pcap whose records are replicated")
    parser.add_argument("--repeat", type=int, default=5, help="runs per contender (median reported)")
    parser.add_argument("--dpkt-packets", type=int, default=200_000, help="records dpkt parses per run")
    parser.add_argument("--profile", action="store_true", help="print a pyinstrument profile of darkscope")
    args = parser.parse_args()

    source = args.source or default_source()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.pcap"
        n = build_file(source, args.packets, path)
        size = path.stat().st_size
        print(f"file: {n} records, {size / 1e6:.1f} MB, replicated from {source or 'synthetic SYNs'}")
        darkscope_pass(path)  # warm the page cache and imports

        t_ds, c_ds, packets = timed(lambda: darkscope_pass(path), args.repeat)
        ds_rate = n / t_ds
        print(
            f"darkscope  file -> PacketBatch: {t_ds:.3f} s wall, {c_ds:.3f} s CPU: "
            f"{ds_rate / 1e6:.2f} M records/s wall, {n / c_ds / 1e6:.2f} M/s per CPU-second "
            f"({packets} IP packets, {size / t_ds / 1e6:.0f} MB/s)"
        )

        tcpdump = shutil.which("tcpdump")
        if tcpdump:
            t_td, c_td, _ = timed(lambda: tcpdump_pass(tcpdump, path), args.repeat)
            print(
                f"tcpdump -r FILE -w /dev/null: {t_td:.3f} s wall, {c_td:.3f} s CPU: "
                f"{n / t_td / 1e6:.2f} M records/s; darkscope / tcpdump = {t_td / t_ds:.2f}x wall, "
                f"{c_td / c_ds:.2f}x CPU"
            )
        else:
            print("tcpdump: not installed (apt-get install tcpdump), skipped")

        try:
            t_dp, _, parsed = timed(lambda: dpkt_pass(path, args.dpkt_packets), max(1, args.repeat // 2))
            dp_rate = parsed / t_dp
            print(
                f"dpkt 1.9.8 parser: {dp_rate / 1e6:.3f} M records/s (on {parsed} records); "
                f"darkscope / dpkt = {ds_rate / dp_rate:.1f}x"
            )
        except ImportError:
            print("dpkt: not installed (pip install dpkt==1.9.8), skipped")

        if args.profile:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0005)
            profiler.start()
            darkscope_pass(path)
            profiler.stop()
            print(profiler.output_text())


if __name__ == "__main__":
    main()
