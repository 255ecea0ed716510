"""Fingerprint flags and per-source verdicts on real captures recorded by other people
(../shared/captures, whose README gives independent tshark / dpkt counts)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import numpy as np
import pytest

from producers.capture import open_capture
from schemas.batch import PacketBatch
from schemas.fingerprints import Fingerprint
from streams.fingerprints import SourceVerdicts, flags_of, packet_rules
from tests.producers.pktbuild import shared_captures

# The README's 8 SYNs from 7 sources that are exactly what ZMap before 4.1 sends.
ZMAP_SOURCES = {
    "205.185.125.212",
    "179.43.175.26",
    "185.200.118.57",  # two probes
    "65.49.20.125",
    "23.148.145.61",
    "137.184.99.240",
    "74.201.28.229",
}
# IP id 54321, window 65535, DF clear, but MSS 536 (four) or 1424 (one): not stock ZMap.
NOT_ZMAP = {"104.244.75.62", "209.141.58.209", "107.189.5.7", "107.189.28.31", "162.62.61.98"}


@pytest.fixture(scope="module")
def captures() -> Path:
    folder = shared_captures()
    if not folder.is_dir():
        pytest.skip(f"real captures not found at {folder} (set DARKSCOPE_SHARED_DIR to the shared folder)")
    return folder


def judged(path: Path, batch_size: int = 10_000) -> tuple[PacketBatch, np.ndarray, np.ndarray]:
    """The capture's packets, their flags and their verdicts, fed batch by batch to one
    SourceVerdicts as a worker would."""
    verdicts = SourceVerdicts()
    batches, flags, verdict = [], [], []
    with open_capture(path, batch_size=batch_size) as cap:
        for b in cap:
            hits = packet_rules(b)
            batches.append(b)
            flags.append(flags_of(hits))
            verdict.append(verdicts.update(b, hits))
    return PacketBatch.concat(batches, "s", 0), np.concatenate(flags), np.concatenate(verdict)


def sources(b: PacketBatch, rows: np.ndarray) -> set[str]:
    return {str(ipaddress.IPv4Address(int(s))) for s in b["src"][rows].tolist()}


@pytest.mark.parametrize("batch_size", [10_000, 97])
def test_rrsig_capture_confirms_the_seven_zmap_sources_and_not_the_mss_536_ones(
    captures: Path, batch_size: int
) -> None:
    b, flags, verdict = judged(captures / "amp.dns.RRSIG.fragmented.pcap", batch_size)
    zmap_flag = (flags & Fingerprint.ZMAP) != 0
    zmap_verdict = (verdict & Fingerprint.ZMAP) != 0
    assert int(zmap_flag.sum()) == 8
    assert sources(b, zmap_flag) == ZMAP_SOURCES
    assert sources(b, zmap_verdict) == ZMAP_SOURCES  # one probe each suffices: the full template
    id54321 = (b["ip_id"] == 54321) & (b["protocol"] == 6)
    assert sources(b, id54321) == ZMAP_SOURCES | NOT_ZMAP
    assert not (zmap_flag | zmap_verdict)[
        np.isin(b["src"], [int(ipaddress.IPv4Address(a)) for a in NOT_ZMAP])
    ].any()
    # No Masscan or Mirai in this background, per packet or per source.
    assert not ((flags | verdict) & (Fingerprint.MASSCAN | Fingerprint.MIRAI)).any()


def test_synscan_capture_nmap_source_is_nmap_and_never_zmap(captures: Path) -> None:
    b, flags, verdict = judged(captures / "synscan.pcapng")
    syn = (b["protocol"] == 6) & (b["tcp_flags"] == 0x02)
    assert int(syn.sum()) == 1994
    lucky = syn & (b["ip_id"] == 54321)  # the README's one probe with IP id 54321 by chance
    assert int(lucky.sum()) == 1
    assert not ((flags | verdict) & (Fingerprint.ZMAP | Fingerprint.MASSCAN | Fingerprint.MIRAI)).any()
    assert ((flags[syn] & Fingerprint.NMAP_SYN) != 0).all()
    # A scan of many ports is many probes from one source: confirmed after a few.
    assert ((verdict[syn] & Fingerprint.NMAP_SYN) != 0).sum() >= 1994 - 2


def test_reflection_capture_is_backscatter_and_no_scanner(captures: Path) -> None:
    _, flags, verdict = judged(captures / "amp.TCP.reflection.SYNACK.pcap")
    scanners = Fingerprint.ZMAP | Fingerprint.MASSCAN | Fingerprint.MIRAI | Fingerprint.NMAP_SYN
    assert not ((flags | verdict) & scanners).any()
    assert int(((flags & Fingerprint.BACKSCATTER) != 0).sum()) == 7669 + 153
