"""The EnrichedBatch record in memory: a packet batch with its per-packet enrichment columns
(region and AS dictionary-encoded, service, fingerprint flags and verdicts), as the enrich
step makes it (:mod:`streams.enrich`) and the sinks store it (:mod:`sinks.arrow`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from schemas.batch import PacketBatch

__all__ = ["Enriched", "GeoColumns"]

U16Array = npt.NDArray[np.uint16]
U32Array = npt.NDArray[np.uint32]


@dataclass(frozen=True, eq=False)
class GeoColumns:
    """Per-packet region and AS of one batch, dictionary-encoded as in EnrichedBatch."""

    regions: list[str]
    region_names: list[str]
    region_idx: U16Array
    asn: U32Array
    as_orgs: list[str]
    as_org_idx: U16Array

    def __len__(self) -> int:
        return len(self.asn)


@dataclass(frozen=True, eq=False)
class Enriched:
    """A packet batch with its per-packet enrichment columns."""

    batch: PacketBatch
    source_topic: str
    source_partition: int
    source_offset: int
    geo: GeoColumns
    services: list[str]
    service_idx: npt.NDArray[np.uint16]
    fp_flags: npt.NDArray[np.uint16]
    fp_verdict: npt.NDArray[np.uint16]
    # np.unique(source_keys(batch), return_inverse=True), shared by the steps that need it.
    sources: tuple[npt.NDArray[np.uint64], npt.NDArray[np.intp]] | None = None
