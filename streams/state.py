"""What one worker process holds between events (:class:`WorkerState`), and the alert
detector built from the worker's settings."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from core.settings import KafkaSettings, WorkerSettings
from schemas.codec import Codec
from streams.alerts import AlertDetector, AlertThresholds
from streams.enrich import Enricher
from streams.merge import WindowMerger
from streams.progress import CountBacklog, PacketsProgress
from streams.shard import ShardCounter
from streams.watch import Gaps

__all__ = ["WorkerState", "detector_of"]

logger = logging.getLogger(__name__)


def detector_of(s: WorkerSettings) -> AlertDetector:
    """The alert detector with the thresholds of the settings."""
    return AlertDetector(
        AlertThresholds(
            window=s.alert_window,
            baseline_windows=s.alert_baseline_windows,
            min_history=s.alert_min_history,
            z_score=s.alert_z_score,
            min_ratio=s.alert_min_ratio,
            min_packets=s.alert_min_packets,
            min_sources=s.alert_min_sources,
            cooldown_windows=s.alert_cooldown_windows,
            monitored_addresses=s.alert_monitored_addresses,
            backscatter_warning_pps=s.alert_backscatter_warning_pps,
            backscatter_critical_pps=s.alert_backscatter_critical_pps,
        )
    )


@dataclass
class WorkerState:
    """What one worker process holds between events."""

    settings: WorkerSettings
    kafka: KafkaSettings
    codec: Codec = field(default_factory=Codec)
    enricher: Enricher | None = None
    progress: PacketsProgress | None = None
    backlog: CountBacklog = field(default_factory=CountBacklog)
    counted: asyncio.Event = field(default_factory=asyncio.Event)
    shards: dict[int, ShardCounter] = field(default_factory=dict)  # counts partition -> counts
    mergers: dict[str, WindowMerger] = field(default_factory=dict)  # kind -> its merge
    gaps: Gaps = field(default_factory=Gaps)  # the next offset each agent expects per partition
    detector: AlertDetector | None = None
    packets: int = 0
    batches: int = 0
    dead: int = 0
    partials: int = 0  # PartialCounts counted
    window_messages: int = 0  # WindowCounts merged
    last_log: float = field(default_factory=time.monotonic)
    last_count_log: float = field(default_factory=time.monotonic)

    def get_enricher(self) -> Enricher:
        """The enricher, built on first use (opens the GeoIP databases)."""
        if self.enricher is None:
            from streams.fingerprints import SourceVerdicts
            from streams.geo import GeoResolver
            from streams.geodb import default_city_db
            from streams.services import ServiceRegistry

            s = self.settings
            geo = GeoResolver(s.city_db or default_city_db(), s.asn_db, s.geo_cache_size)
            verdicts = SourceVerdicts(capacity=s.fingerprint_sources)
            self.enricher = Enricher(geo, ServiceRegistry.load(), verdicts, self.codec)
            logger.info("enricher ready: geo %s, asn %s", geo.geo_db_version, geo.asn_db_version or "none")
        return self.enricher
