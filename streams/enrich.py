"""The enrich step as a pure function of a packet batch: region, AS, service, fingerprints,
and the combiner's partial counts for the windowed tables.

The Faust agent (``streams/app.py``) only decodes, calls :meth:`Enricher.enrich` and sends
what comes back.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import numpy as np
import numpy.typing as npt

from schemas.batch import PacketBatch
from schemas.codec import Codec, column_dtypes_of, pack_columns
from schemas.enriched import Enriched
from schemas.fingerprints import Fingerprint
from schemas.names import ENRICHED_BATCH
from schemas.partials import Partial, PartialFrame
from schemas.registry import default_schemas
from streams.combiner import aggregate
from streams.fingerprints import FINGERPRINTS, SourceVerdicts, flags_of, packet_rules, source_keys
from streams.geo import GeoResolver
from streams.services import ServiceRegistry
from streams.sketch import ipv6_keys

__all__ = ["Enricher", "port_values"]

ICMP_ERRORS = np.array([3, 4, 5, 11, 12], dtype=np.uint8)
ICMP6_ERRORS = np.array([1, 2, 3, 4], dtype=np.uint8)  # whose quote names the victim
_PORT_PROTOS = {6: "tcp", 17: "udp", 132: "sctp"}
_FP_NAMES = [(bit, bit.name.lower()) for bit in FINGERPRINTS if bit.name]


def port_values(
    protocol: npt.NDArray[np.uint8], dport: npt.NDArray[np.uint16]
) -> tuple[npt.NDArray[np.int64], list[str]]:
    """Per packet a code into labels like '23/tcp', 'icmp', 'icmpv6', 'proto/47'."""
    proto = protocol.astype(np.int64)
    has_port = np.isin(proto, np.array(list(_PORT_PROTOS), dtype=np.int64))
    code = proto * 65536 + np.where(has_port, dport.astype(np.int64), 0)
    uniq, inverse = np.unique(code, return_inverse=True)
    return inverse.astype(np.int64), [_PORT_LABELS.get(c) or _port_label(c) for c in uniq.tolist()]


_PORT_LABELS: dict[int, str] = {}  # code -> label, of the ports seen lately
_PORT_LABELS_MAX = 1 << 16  # of 4 x 65,536 + 256 possible: every TCP port (a darknet sees them in hours)


def _port_label(code: int) -> str:
    if len(_PORT_LABELS) >= _PORT_LABELS_MAX:
        _PORT_LABELS.clear()  # bounded: formatting a label again costs less than keeping them all
    p, port = divmod(code, 65536)
    if p in _PORT_PROTOS:
        label = f"{port}/{_PORT_PROTOS[p]}"
    elif p == 1:
        label = "icmp"
    elif p == 58:
        label = "icmpv6"
    else:
        label = f"proto/{p}"
    _PORT_LABELS[code] = label
    return label


def _victims(b: PacketBatch, rows: npt.NDArray[np.intp]) -> tuple[npt.NDArray[np.int64], list[str]]:
    """Backscatter victim of each row: the replying source, or for an ICMP / ICMPv6 error the
    destination of the quoted datagram (the host the spoofed packet was sent to); IPv4 or
    IPv6, labelled in its text form."""
    proto, icmp_type = b["protocol"][rows], b["icmp_type"][rows]
    quoted = b["inner_protocol"][rows] != 0
    is6 = b["ip_version"][rows] == 6
    quoted4 = quoted & ~is6 & (proto == 1) & np.isin(icmp_type, ICMP_ERRORS)
    v4 = np.where(quoted4, b["inner_dst"][rows], b["src"][rows]).astype(np.uint64)
    keys = v4.copy()
    six: dict[int, bytes] = {}
    if is6.any():
        r6 = rows[is6]
        quoted6 = quoted[is6] & (proto[is6] == 58) & np.isin(icmp_type[is6], ICMP6_ERRORS)
        addr6 = np.where(quoted6, b["inner_dst6"][r6], b["src6"][r6])
        keys[is6] = ipv6_keys(addr6)
        distinct, first = np.unique(keys[is6], return_index=True)
        six = {k: bytes(addr6[i].tobytes()) for k, i in zip(distinct.tolist(), first.tolist(), strict=True)}
    uniq, inverse = np.unique(keys, return_inverse=True)
    labels = [
        str(ipaddress.IPv6Address(six[k])) if k in six else str(ipaddress.IPv4Address(k))
        for k in uniq.tolist()
    ]
    return inverse.astype(np.int64), labels


class Enricher:
    """Enriches batches and derives their partial counts; holds the per-worker state
    (GeoIP cache, per-source fingerprint verdicts)."""

    def __init__(
        self,
        geo: GeoResolver,
        services: ServiceRegistry,
        verdicts: SourceVerdicts | None = None,
        codec: Codec | None = None,
    ) -> None:
        """Lookups and state for one worker."""
        self.geo = geo
        self.services = services
        # Not `verdicts or ...`: an empty SourceVerdicts is falsy (it has a length).
        self.verdicts = verdicts if verdicts is not None else SourceVerdicts()
        self.codec = codec or Codec()
        schemas = default_schemas()
        self._enriched_cols = column_dtypes_of(schemas[ENRICHED_BATCH])

    def enrich(
        self, batch: PacketBatch, source_topic: str = "", source_partition: int = 0, source_offset: int = 0
    ) -> Enriched:
        """Region, AS, service and fingerprint columns for every packet of the batch."""
        hits = packet_rules(batch)
        flags = flags_of(hits)
        sources = np.unique(source_keys(batch), return_inverse=True)
        verdict = self.verdicts.update(batch, hits, sources)
        names, idx = self.services.lookup(batch["protocol"], batch["dport"])
        return Enriched(
            batch,
            source_topic,
            source_partition,
            source_offset,
            self.geo.enrich(batch, sources),
            names,
            idx,
            flags,
            verdict,
            sources,
        )

    def record(self, e: Enriched) -> dict[str, Any]:
        """The EnrichedBatch Avro record."""
        g = e.geo
        rec: dict[str, Any] = {
            "packets": self.codec.batch_record(e.batch),
            "source_topic": e.source_topic,
            "source_partition": e.source_partition,
            "source_offset": e.source_offset,
            "geo_db_version": self.geo.geo_db_version,
            "asn_db_version": self.geo.asn_db_version,
            "regions": g.regions,
            "region_names": g.region_names,
            "as_orgs": g.as_orgs,
            "services": e.services,
        }
        rec.update(
            pack_columns(
                {
                    "region_idx": g.region_idx,
                    "asn": g.asn,
                    "as_org_idx": g.as_org_idx,
                    "service_idx": e.service_idx,
                    "fp_flags": e.fp_flags,
                    "fp_verdict": e.fp_verdict,
                },
                self._enriched_cols,
            )
        )
        return rec

    def encode(self, e: Enriched) -> bytes:
        """The EnrichedBatch frame."""
        return self.codec.encode(ENRICHED_BATCH, self.record(e))

    def partials(self, e: Enriched, shards: int = 1) -> list[list[Partial]]:
        """Per-minute partial counts of the batch for every dimension kind, split over
        ``shards`` counts partitions by the counted address: ``out[shard]`` is one partial
        per kind."""
        b = e.batch
        ts = b["ts"]
        src = source_keys(b)
        sources = e.sources or np.unique(src, return_inverse=True)
        kinds: list[list[Partial]] = []
        codes, labels = port_values(b["protocol"], b["dport"])
        kinds.append(aggregate("port", ts, codes, labels, src, shards, sources))
        region = e.geo.region_idx.astype(np.int64)
        kinds.append(aggregate("region", ts, region, e.geo.regions, src, shards, sources))
        # A packet counts once for every fingerprint it matches.
        nreg = max(len(e.geo.regions), 1)
        fp_rows, fp_codes, fp_labels = [], [], []
        for i, (bit, name) in enumerate(_FP_NAMES):
            rows = np.flatnonzero((e.fp_flags & np.uint16(bit)) != 0)
            fp_rows.append(rows)
            fp_codes.append(i * nreg + region[rows])
            fp_labels += [f"{name}/{r}" for r in e.geo.regions] or [f"{name}/ZZ"]
        rows = np.concatenate(fp_rows)
        used, fp_inverse = np.unique(np.concatenate(fp_codes), return_inverse=True)
        kinds.append(
            aggregate(
                "fp_region",
                ts[rows],
                fp_inverse.astype(np.int64),
                [fp_labels[c] for c in used.tolist()],
                src[rows],
                shards,
                (sources[0], sources[1][rows]),
            )
        )
        kinds.append(aggregate("sensor", ts, np.zeros(len(b), np.int64), [b.sensor_id], src, shards, sources))
        bs = np.flatnonzero((e.fp_flags & np.uint16(Fingerprint.BACKSCATTER)) != 0)
        vcodes, vlabels = _victims(b, bs)
        dst = b["dst"].astype(np.uint64)
        is6 = b["ip_version"] == 6
        if is6.any():
            dst[is6] = ipv6_keys(b["dst6"][is6])
        kinds.append(aggregate("victim", ts[bs], vcodes, vlabels, dst[bs], shards))
        return [[k[s] for k in kinds] for s in range(shards)]

    def frames(self, e: Enriched, shards: int, watermark_ns: int) -> list[PartialFrame]:
        """One PartialCounts per counts partition (those without rows carry the watermark)."""
        return [
            PartialFrame(tuple(ps), e.source_partition, watermark_ns, e.source_offset, shard, shards)
            for shard, ps in enumerate(self.partials(e, shards))
        ]
