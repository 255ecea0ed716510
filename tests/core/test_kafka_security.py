"""TLS and SASL settings become the right client configuration for librdkafka and Faust,
and no secret shows in a setting's repr, a validation error or a configuration error.

The clients themselves are tested against a broker with a SASL_SSL listener in
``test_kafka_tls.py``.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from faust.auth import SASLCredentials, SSLCredentials
from pydantic import ValidationError

from core.errors import ConfigError
from core.kafka_security import client_config, security_config, ssl_context
from core.settings import KafkaSettings
from streams.faustapp import broker_credentials

SECRET = f"pw-{uuid.uuid4().hex}"


def _ca(tmp_path: Path) -> Path:
    """Any readable PEM file stands in for a CA bundle where only its path matters."""
    path = tmp_path / "ca.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    return path


def test_plaintext_clients_get_only_their_own_configuration() -> None:
    KafkaSettings(bootstrap="plain.example:9092")
    conf = client_config("plain.example:9092", {"group.id": "g"})
    assert conf == {"bootstrap.servers": "plain.example:9092", "group.id": "g"}


def test_a_bootstrap_no_settings_named_is_plaintext() -> None:
    bootstrap = f"{uuid.uuid4().hex[:8]}.example:9092"
    assert client_config(bootstrap) == {"bootstrap.servers": bootstrap}


def test_sasl_ssl_settings_give_every_librdkafka_client_scram_over_verified_tls(tmp_path: Path) -> None:
    ca = _ca(tmp_path)
    KafkaSettings(
        bootstrap="secure.example:9094",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-256",
        sasl_username="sensor-1",
        sasl_password=SECRET,
        ssl_ca=ca,
    )
    conf = client_config("secure.example:9094", {"group.id": "g"})
    assert conf == {
        "bootstrap.servers": "secure.example:9094",
        "group.id": "g",
        "security.protocol": "sasl_ssl",
        "ssl.ca.location": str(ca),
        "ssl.endpoint.identification.algorithm": "https",
        "sasl.mechanism": "SCRAM-SHA-256",
        "sasl.username": "sensor-1",
        "sasl.password": SECRET,
    }


def test_the_last_settings_built_for_a_bootstrap_decide_its_security() -> None:
    bootstrap = f"{uuid.uuid4().hex[:8]}.example:9094"
    KafkaSettings(
        bootstrap=bootstrap, security_protocol="SASL_PLAINTEXT", sasl_username="u", sasl_password="p"
    )
    assert client_config(bootstrap)["security.protocol"] == "sasl_plaintext"
    KafkaSettings(bootstrap=bootstrap)
    assert "security.protocol" not in client_config(bootstrap)


def test_tls_without_hostname_check_still_verifies_the_certificate_chain() -> None:
    kafka = KafkaSettings(bootstrap="tls.example:9093", security_protocol="SSL", ssl_check_hostname=False)
    assert security_config(kafka) == {
        "security.protocol": "ssl",
        "ssl.endpoint.identification.algorithm": "none",
    }
    ctx = ssl_context(kafka)
    assert ctx is not None and not ctx.check_hostname and ctx.verify_mode.name == "CERT_REQUIRED"


def test_sasl_without_credentials_is_a_config_error_naming_the_variables() -> None:
    with pytest.raises(ConfigError, match="DARKSCOPE_SASL_USERNAME and DARKSCOPE_SASL_PASSWORD"):
        KafkaSettings(security_protocol="SASL_SSL", sasl_username="sensor-1")
    with pytest.raises(ConfigError) as caught:
        KafkaSettings(security_protocol="SASL_SSL", sasl_password=SECRET)
    assert SECRET not in str(caught.value)


def test_a_missing_ca_file_is_a_config_error_when_the_settings_are_built(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="DARKSCOPE_SSL_CA: no such file"):
        KafkaSettings(bootstrap="x.example:1", security_protocol="SSL", ssl_ca=tmp_path / "none.pem")


def test_an_unreadable_ca_file_is_a_config_error_for_faust(tmp_path: Path) -> None:
    kafka = KafkaSettings(bootstrap="y.example:1", security_protocol="SSL", ssl_ca=_ca(tmp_path))
    with pytest.raises(ConfigError, match="DARKSCOPE_SSL_CA"):
        ssl_context(kafka)  # the stand-in file holds no certificate


def test_the_password_is_in_no_repr_dump_or_validation_error() -> None:
    kafka = KafkaSettings(
        bootstrap="r.example:1", security_protocol="SASL_SSL", sasl_username="u", sasl_password=SECRET
    )
    shown = [repr(kafka), str(kafka), kafka.model_dump_json(), str(kafka.model_dump())]
    with pytest.raises(ValidationError) as caught:
        KafkaSettings(partitions=0, security_protocol="SASL_SSL", sasl_username="u", sasl_password=SECRET)
    shown.append(str(caught.value))
    assert [text for text in shown if SECRET in text] == []


def test_faust_gets_scram_credentials_with_the_tls_context() -> None:
    kafka = KafkaSettings(
        bootstrap="f.example:1",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="worker",
        sasl_password=SECRET,
    )
    creds = broker_credentials(kafka)
    assert isinstance(creds, SASLCredentials)
    assert (creds.protocol.value, creds.mechanism.value, creds.username) == (
        "SASL_SSL",
        "SCRAM-SHA-512",
        "worker",
    )
    assert creds.ssl_context is not None and creds.ssl_context.check_hostname
    assert SECRET not in repr(creds)


def test_faust_gets_a_tls_context_alone_for_ssl_and_nothing_for_plaintext() -> None:
    creds = broker_credentials(KafkaSettings(bootstrap="s.example:1", security_protocol="SSL"))
    assert isinstance(creds, SSLCredentials) and creds.protocol.value == "SSL"
    assert broker_credentials(KafkaSettings(bootstrap="p.example:1")) is None
