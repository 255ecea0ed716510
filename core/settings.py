"""Settings, one pydantic-settings class per deployable, all read from ``DARKSCOPE_*``.

Settings are built only in entry points (the CLI) and passed down; nothing reads the
environment at import time. Every field is documented in README.md (a test checks it).
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = [
    "ALL_SETTINGS",
    "ReportSettings",
    "BrokerSettings",
    "ForwardSettings",
    "KafkaSettings",
    "SensorSettings",
    "SinkSettings",
    "TopicNames",
    "WorkerSettings",
]


def _default_home() -> Path:
    return Path.cwd() / ".darkscope"


class TopicNames(BaseSettings):
    """Names of the Kafka topics darkscope reads and writes."""

    model_config = SettingsConfigDict(env_prefix="DARKSCOPE_TOPIC_", frozen=True)

    packets: str = Field("darkscope.packets", description="Packet batches and events from sensors.")
    enriched: str = Field("darkscope.enriched", description="Enriched packet batches.")
    counts: str = Field(
        "darkscope.counts", description="Partial windowed counts (combiner output), routed by address hash."
    )
    windows: str = Field(
        "darkscope.windows",
        description="Closed windows of each counts partition, keyed by kind (merge input).",
    )
    alerts: str = Field("darkscope.alerts", description="Real-time alerts (Avro).")
    sensors: str = Field("darkscope.sensors", description="Sensor health records.")
    scans: str = Field(
        "darkscope.scans", description="Ended scan events, keyed by source (Avro; darkscope scans publish)."
    )
    deadletter: str = Field("darkscope.deadletter", description="Undecodable or rejected messages.")

    def all(self) -> list[str]:
        """Every topic name, in pipeline order."""
        return [
            self.packets,
            self.enriched,
            self.counts,
            self.windows,
            self.alerts,
            self.sensors,
            self.scans,
            self.deadletter,
        ]


class KafkaSettings(BaseSettings):
    """How every darkscope process reaches Kafka."""

    model_config = SettingsConfigDict(env_prefix="DARKSCOPE_", frozen=True)

    bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers (host:port,...).")
    partitions: int = Field(
        8, ge=1, description="Partitions per darkscope topic; bounds the useful worker count."
    )
    replication: int = Field(1, ge=1, description="Replication factor of darkscope topics.")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT",
        description="How every client talks to Kafka: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.",
    )
    sasl_mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"] = Field(
        "SCRAM-SHA-512", description="SASL mechanism, with SASL_PLAINTEXT / SASL_SSL."
    )
    sasl_username: str = Field("", description="SASL user, with SASL_PLAINTEXT / SASL_SSL.")
    sasl_password: SecretStr | None = Field(
        None, description="SASL password, with SASL_PLAINTEXT / SASL_SSL (never logged)."
    )
    ssl_ca: Path | None = Field(
        None, description="PEM file of the CAs that sign the brokers' certificates (SSL / SASL_SSL)."
    )
    ssl_check_hostname: bool = Field(
        True, description="Check that a broker's certificate names the host connected to (SSL / SASL_SSL)."
    )

    def model_post_init(self, context: Any, /) -> None:
        """Make this security the one every client of ``bootstrap`` uses (refusing SASL without
        credentials, in words that hold no secret): :mod:`core.kafka_security`."""
        from core.kafka_security import register

        register(self)


class BrokerSettings(BaseSettings):
    """The local single-node KRaft broker that `darkscope broker` manages."""

    model_config = SettingsConfigDict(env_prefix="DARKSCOPE_BROKER_", frozen=True)

    port: int = Field(9092, ge=1, le=65535, description="Client (PLAINTEXT) port on 127.0.0.1.")
    controller_port: int = Field(
        0, ge=0, le=65535, description="KRaft controller port; 0 means client port + 1."
    )
    data_dir: Path = Field(
        default_factory=lambda: _default_home() / "kafka",
        description="Folder for KRaft storage, the broker log, its pid file and config.",
    )
    cache_dir: Path = Field(
        default_factory=lambda: Path.home() / ".cache" / "darkscope",
        description="Folder where Maven copies the pinned broker jars.",
    )
    heap: str = Field("1G", description="Broker JVM heap (-Xmx and -Xms).")
    start_timeout: float = Field(90.0, gt=0, description="Seconds to wait for the broker to answer.")

    @property
    def effective_controller_port(self) -> int:
        """The controller port actually used."""
        return self.controller_port or self.port + 1


class WorkerSettings(BaseSettings):
    """A stream worker (`darkscope worker`): enrichment, windowed counts, alerts."""

    model_config = SettingsConfigDict(env_prefix="DARKSCOPE_WORKER_", frozen=True)

    app_id: str = Field("darkscope", description="Faust application id (consumer group and table prefix).")
    city_db: Path | None = Field(
        None, description="City or country .mmdb (MaxMind layout); default: the packaged DB-IP City Lite."
    )
    asn_db: Path | None = Field(None, description="ASN .mmdb (GeoLite2-ASN layout); none: ASN 0.")
    geo_cache_size: int = Field(65536, ge=0, description="Source addresses whose GeoIP answer is cached.")
    fingerprint_sources: int = Field(
        1_000_000,
        ge=1000,
        description="Sources whose fingerprint evidence a worker keeps (the least recently seen are "
        "forgotten): about 65 MiB at 1,000,000 (`bench/fingerprint_memory.py`).",
    )
    lateness: int = Field(60, ge=0, description="Seconds of event time a window waits for late packets.")
    idle_after: float = Field(
        10.0,
        gt=0,
        description="Seconds a caught-up packets partition stays silent before it is idle.",
    )
    retention: int = Field(
        3600, ge=0, description="Seconds of event time closed windows stay correctable by late packets."
    )
    alert_window: str = Field("1h", pattern="^(1m|1h)$", description="Window size the surge rules watch.")
    alert_baseline_windows: int = Field(24, ge=2, description="Trailing windows in an alert baseline.")
    alert_min_history: int = Field(6, ge=1, description="Windows of history before a key can alert.")
    alert_z_score: float = Field(6.0, gt=0, description="Robust z-score (median/MAD) that makes a surge.")
    alert_min_ratio: float = Field(
        5.0, gt=1, description="A surge is also at least this many times the baseline."
    )
    alert_min_packets: int = Field(200, ge=1, description="Packets a window needs before it can alert.")
    alert_min_sources: int = Field(20, ge=1, description="Sources a Mirai burst needs.")
    alert_cooldown_windows: int = Field(6, ge=1, description="Windows before the same alert can repeat.")
    alert_monitored_addresses: int = Field(
        256,
        ge=1,
        description="Darknet addresses watched (all sensors): a DoS episode's rate is extrapolated to "
        "the IPv4 space as rate * 2^32 / this (Moore et al.).",
    )
    alert_backscatter_warning_pps: float = Field(
        40e6, gt=0, description="Extrapolated attack rate (packets/s) of a warning DoS episode."
    )
    alert_backscatter_critical_pps: float = Field(
        60e6, gt=0, description="Extrapolated attack rate (packets/s) of a critical DoS episode."
    )
    data_dir: Path = Field(
        default_factory=lambda: _default_home() / "worker", description="Faust's data folder for this worker."
    )
    web_port: int = Field(0, ge=0, le=65535, description="Faust web port (0: no web server).")
    session_timeout: float = Field(
        60.0,
        ge=6,
        le=300,
        description="Seconds without a heartbeat before a worker's partitions go to the others.",
    )


class SensorSettings(BaseSettings):
    """A sensor (`darkscope sensor`): what it captures and how it publishes."""

    model_config = SettingsConfigDict(env_prefix="DARKSCOPE_SENSOR_", frozen=True)

    sensor_id: str = Field(default_factory=socket.gethostname, description="Sensor id (default: host name).")
    prefixes: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Monitored prefixes, CIDR, comma-separated or JSON list; packets to others are dropped. "
        "Empty: accept every destination.",
    )
    batch_size: int = Field(
        10_000, ge=1, le=100_000, description="Packets per Kafka message (columnar batch)."
    )
    linger: float = Field(0.1, gt=0, description="Seconds a live capture waits to fill a batch.")
    health_interval: float = Field(5.0, gt=0, description="Seconds between sensor health records.")
    snaplen: int = Field(
        256, ge=64, le=65535, description="Live capture: bytes kept per packet (headers only)."
    )
    promiscuous: bool = Field(True, description="Live capture: put the interface in promiscuous mode.")
    buffer_mb: int = Field(64, ge=1, description="Live capture: kernel ring buffer size in MiB.")

    @field_validator("prefixes", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            if value.strip().startswith("["):
                return json.loads(value)
            return [p.strip() for p in value.split(",") if p.strip()]
        return value


class SinkSettings(BaseSettings):
    """The ClickHouse sink (`darkscope sink`) and `darkscope sql`: where the store is, how to load it."""

    model_config = SettingsConfigDict(env_prefix="DARKSCOPE_SINK_", frozen=True)

    dsn: str = Field(
        default_factory=lambda: f"chdb://{_default_home() / 'clickhouse'}",
        description="ClickHouse store: chdb://PATH (embedded, one process at a time) or http(s)://user@host:8123/db.",
    )
    password: SecretStr | None = Field(None, description="Password for a server DSN that does not carry one.")
    group_id: str = Field("darkscope-sink", description="Kafka consumer group of the sink.")
    batch_rows: int = Field(
        200_000,
        ge=1,
        description="Packets per ClickHouse insert (enriched batches of one partition are joined).",
    )
    linger: float = Field(1.0, gt=0, description="Seconds a partly filled insert waits for more batches.")
    ttl_days: int = Field(0, ge=0, description="Days raw packets are kept (0: forever); rollups are kept.")
    max_backoff: float = Field(
        30.0, gt=0, description="Longest wait between retries while ClickHouse is unavailable (never drops)."
    )
    scan_idle: int = Field(
        600, ge=60, description="Seconds of silence that end a source's scan event (darkscope scans)."
    )


class ReportSettings(BaseSettings):
    """The quarterly report (`darkscope report`): where it goes and how events are detected."""

    model_config = SettingsConfigDict(env_prefix="DARKSCOPE_REPORT_", frozen=True)

    out_dir: Path = Field(Path("reports-out"), description="Folder the HTML and JSON are written to.")
    focus_region: str = Field("JP", description="Region (ISO code) of Figure 6 and the Figure 4 ranks.")
    z: float = Field(5.0, gt=0, description="Change-point penalty: noise standard deviations per parameter.")
    min_step: float = Field(
        0.22, gt=0, description="Smallest surge or drop, as a log ratio (0.22: +25%/-20%)."
    )
    min_pulse: float = Field(0.4, gt=0, description="Smallest short burst or dip, as a log ratio.")
    min_trend: float = Field(0.3, gt=0, description="Smallest trend: log change over its period.")
    swap_days: int = Field(7, ge=1, description="Days a rank swap must hold, before and after.")
    top_episodes: int = Field(5, ge=0, description="Largest backscatter (DoS) episodes listed as events.")


class ForwardSettings(BaseSettings):
    """`darkscope alerts forward`: the webhook alerts are posted to, how they are signed and retried."""

    model_config = SettingsConfigDict(env_prefix="DARKSCOPE_FORWARD_", frozen=True)

    url: str = Field("", description="Webhook URL the alerts are posted to (or --url).")
    secret: SecretStr | None = Field(
        None, description="Shared secret of the X-Darkscope-Signature HMAC-SHA256 header (never logged)."
    )
    format: Literal["json", "slack"] = Field(
        "json", description="Body: json (the alert record) or slack (a Slack-compatible message)."
    )
    min_severity: Literal["info", "warning", "critical"] = Field(
        "info", description="Alerts below this severity are passed over (committed, not posted)."
    )
    group_id: str = Field("darkscope-forward", description="Kafka consumer group of the forwarder.")
    timeout: float = Field(10.0, gt=0, description="Seconds a post may take before it counts as failed.")
    max_backoff: float = Field(
        60.0, gt=0, le=240, description="Longest wait between retries while the webhook fails (never skips)."
    )


# Every settings class, in the order the README's table lists them.
ALL_SETTINGS: tuple[type[BaseSettings], ...] = (
    KafkaSettings,
    TopicNames,
    BrokerSettings,
    SensorSettings,
    WorkerSettings,
    ForwardSettings,
    SinkSettings,
    ReportSettings,
)


def settings_table() -> str:
    """The README's settings table, one row per setting, from the classes above."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for cls in ALL_SETTINGS:
        prefix = str(cls.model_config.get("env_prefix", ""))
        for name, field in cls.model_fields.items():
            if field.default_factory is not None:
                default = {
                    "data_dir": "./.darkscope/…",
                    "cache_dir": "~/.cache/darkscope",
                    "sensor_id": "host name",
                    "prefixes": "(none: all)",
                    "dsn": "chdb://./.darkscope/clickhouse",
                }.get(name, "")
            else:
                default = "" if field.default is None else str(field.default)
            rows.append(
                f"| `{prefix}{name}`".upper().replace("`DARKSCOPE", "`DARKSCOPE")
                + f" | `{default}` | {field.description} |"
            )
    return "\n".join(rows)
