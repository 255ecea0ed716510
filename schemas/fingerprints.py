"""The fingerprint bits of the ``fp_flags`` (per packet) and ``fp_verdict`` (per confirmed
source) columns of EnrichedBatch and of the ``packets`` table. The predicates that set them are
:mod:`streams.fingerprints`; the sinks and reports read the bits by these names."""

from __future__ import annotations

from enum import IntFlag

__all__ = ["Fingerprint"]


class Fingerprint(IntFlag):
    """Bits of the ``fp_flags`` / ``fp_verdict`` columns."""

    MIRAI = 1
    ZMAP = 2
    MASSCAN = 4
    BACKSCATTER = 8
    NMAP_SYN = 16
    ICMP_ECHO_SCAN = 32
