"""Settings, one pydantic-settings class per deployable, all read from ``DARKSCOPE_*``.

Settings are built only in entry points (the CLI) and passed down; nothing reads the
environment at import time. Every field is documented in README.md (a test checks it).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["BrokerSettings", "KafkaSettings", "TopicNames"]


def _default_home() -> Path:
    return Path.cwd() / ".darkscope"


class TopicNames(BaseSettings):
    """Names of the Kafka topics darkscope reads and writes."""

    model_config = SettingsConfigDict(env_prefix="DARKSCOPE_TOPIC_", frozen=True)

    packets: str = Field("darkscope.packets", description="Packet batches and events from sensors.")
    enriched: str = Field("darkscope.enriched", description="Enriched packet batches.")
    counts: str = Field("darkscope.counts", description="Partial windowed counts (combiner output).")
    alerts: str = Field("darkscope.alerts", description="Real-time alerts (Avro).")
    sensors: str = Field("darkscope.sensors", description="Sensor health records.")
    deadletter: str = Field("darkscope.deadletter", description="Undecodable or rejected messages.")

    def all(self) -> list[str]:
        """Every topic name, in pipeline order."""
        return [self.packets, self.enriched, self.counts, self.alerts, self.sensors, self.deadletter]


class KafkaSettings(BaseSettings):
    """How every darkscope process reaches Kafka."""

    model_config = SettingsConfigDict(env_prefix="DARKSCOPE_", frozen=True)

    bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers (host:port,...).")
    partitions: int = Field(
        8, ge=1, description="Partitions per darkscope topic; bounds the useful worker count."
    )
    replication: int = Field(1, ge=1, description="Replication factor of darkscope topics.")


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
