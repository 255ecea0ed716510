"""Kafka over TLS and SASL (SCRAM) for every client darkscope builds.

:class:`core.settings.KafkaSettings` carries the security (``DARKSCOPE_SECURITY_PROTOCOL``,
``DARKSCOPE_SASL_*``, ``DARKSCOPE_SSL_*``). librdkafka clients (the sensor's publisher, the
sink's consumer and dead-letter publisher, ``alerts tail``, the admin client behind the topic
helpers, the worker's takeover reader, the broker probes) build their configuration with
:func:`client_config`; Faust's aiokafka clients take :func:`ssl_context` and the SASL
credentials (:mod:`streams.faustapp`).

Several of those clients are handed only a bootstrap string (the topic helpers, the worker's
takeover reader), so the settings register their security under their bootstrap when they are
built (``KafkaSettings.model_post_init``) and :func:`client_config` adds it: one process, one
security per cluster, the last settings built for a bootstrap win. A bootstrap no settings
named is plain PLAINTEXT, as before.

Secrets: the password stays a ``SecretStr`` up to the dict handed to the client; nothing here
logs a configuration, and errors name the settings, never their values.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from core.errors import ConfigError

if TYPE_CHECKING:
    from core.settings import KafkaSettings

__all__ = ["client_config", "register", "security_config", "ssl_context"]

_BY_BOOTSTRAP: dict[str, dict[str, Any]] = {}


def security_config(kafka: KafkaSettings) -> dict[str, Any]:
    """The librdkafka properties of ``kafka``'s security (empty for PLAINTEXT)."""
    protocol = kafka.security_protocol
    if protocol == "PLAINTEXT":
        return {}
    conf: dict[str, Any] = {"security.protocol": protocol.lower()}
    if protocol.endswith("SSL"):
        if kafka.ssl_ca is not None:
            if not kafka.ssl_ca.is_file():
                raise ConfigError(f"DARKSCOPE_SSL_CA: no such file {kafka.ssl_ca}")
            conf["ssl.ca.location"] = str(kafka.ssl_ca)
        conf["ssl.endpoint.identification.algorithm"] = "https" if kafka.ssl_check_hostname else "none"
    if protocol.startswith("SASL_"):
        if not kafka.sasl_username or kafka.sasl_password is None:
            needs = "needs DARKSCOPE_SASL_USERNAME and DARKSCOPE_SASL_PASSWORD"
            raise ConfigError(f"DARKSCOPE_SECURITY_PROTOCOL={protocol} {needs}")
        conf["sasl.mechanism"] = kafka.sasl_mechanism
        conf["sasl.username"] = kafka.sasl_username
        conf["sasl.password"] = kafka.sasl_password.get_secret_value()
    return conf


def register(kafka: KafkaSettings) -> None:
    """Make ``kafka``'s security the one :func:`client_config` adds for its bootstrap."""
    _BY_BOOTSTRAP[kafka.bootstrap] = security_config(kafka)


def client_config(bootstrap: str, conf: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A librdkafka configuration for ``bootstrap``: ``conf`` plus the security registered
    for that bootstrap."""
    return {"bootstrap.servers": bootstrap, **(conf or {}), **_BY_BOOTSTRAP.get(bootstrap, {})}


def ssl_context(kafka: KafkaSettings) -> ssl.SSLContext | None:
    """The TLS context of an SSL / SASL_SSL connection (None otherwise), for aiokafka."""
    if not kafka.security_protocol.endswith("SSL"):
        return None
    try:
        ctx = ssl.create_default_context(cafile=str(kafka.ssl_ca) if kafka.ssl_ca else None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"DARKSCOPE_SSL_CA: cannot load {kafka.ssl_ca}: {exc.strerror or exc}") from exc
    ctx.check_hostname = kafka.ssl_check_hostname
    return ctx
