"""The Kafka client factory: every client gets the configured security, secrets stay secret."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from faust.auth import SASLCredentials
from pydantic import SecretStr

from driftloop.kafka.clients import faust_options, make_admin, make_consumer, security_options
from driftloop.kafka.local_broker import BrokerError, check_plaintext
from driftloop.kit.settings import ConfigError, KafkaSettings, load_settings


def test_plaintext_has_no_tls_and_no_sasl() -> None:
    assert security_options(KafkaSettings()) == {"security_protocol": "PLAINTEXT"}
    assert faust_options(KafkaSettings(), "a:9092,b:9092")["broker_credentials"] is None


async def test_sasl_ssl_gives_every_client_the_same_tls_context_and_credentials() -> None:
    settings = KafkaSettings(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="alice",
        sasl_password=SecretStr("alice-secret"),
    )
    options = security_options(settings)
    assert isinstance(options.pop("ssl_context"), ssl.SSLContext)
    assert options == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "alice",
        "sasl_plain_password": "alice-secret",
    }
    consumer = make_consumer(settings, "kafka:9093", "topic")
    assert consumer._client._security_protocol == "SASL_SSL"
    await consumer.stop()
    admin = make_admin(settings, "kafka:9093")
    assert admin._client._sasl_mechanism == "SCRAM-SHA-512"
    await admin.close()
    credentials = faust_options(settings, "kafka:9093")["broker_credentials"]
    assert isinstance(credentials, SASLCredentials)
    assert credentials.protocol.value == "SASL_SSL"
    assert credentials.mechanism.value == "SCRAM-SHA-512"


def test_sasl_plaintext_has_no_tls_context() -> None:
    settings = KafkaSettings(
        security_protocol="SASL_PLAINTEXT", sasl_username="a", sasl_password=SecretStr("b")
    )
    assert "ssl_context" not in security_options(settings)


def test_sasl_without_credentials_is_refused_naming_the_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DRIFTLOOP_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    with pytest.raises(ConfigError, match="DRIFTLOOP_KAFKA_SASL_USERNAME"):
        load_settings(KafkaSettings)
    monkeypatch.setenv("DRIFTLOOP_KAFKA_SECURITY_PROTOCOL", "TLS")
    with pytest.raises(ConfigError, match="DRIFTLOOP_KAFKA_SECURITY_PROTOCOL"):
        load_settings(KafkaSettings)


def test_a_missing_ca_file_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTLOOP_KAFKA_SSL_CA_FILE", "/nowhere/ca.pem")
    with pytest.raises(ConfigError, match=r"DRIFTLOOP_KAFKA_SSL_CA_FILE.*no such file"):
        load_settings(KafkaSettings)


def test_the_password_never_shows_in_the_settings() -> None:
    settings = KafkaSettings(
        security_protocol="SASL_SSL", sasl_username="a", sasl_password=SecretStr("hunter2")
    )
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings.model_dump())


def test_a_local_broker_is_refused_to_settings_for_a_secured_cluster(tmp_path: Path) -> None:
    """No bootstrap servers means a local plaintext broker: a TLS or SASL setting given
    explicitly is refused by name (never by value); PLAINTEXT said out loud is not."""
    ca = tmp_path / "ca.pem"
    ca.write_text("not read")
    with pytest.raises(BrokerError) as refused:
        check_plaintext(KafkaSettings(ssl_ca_file=ca, ssl_check_hostname=False))
    assert str(refused.value).startswith(
        "DRIFTLOOP_KAFKA_SSL_CA_FILE, DRIFTLOOP_KAFKA_SSL_CHECK_HOSTNAME set without "
        "DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS: "
    )
    secret = KafkaSettings(
        security_protocol="SASL_PLAINTEXT", sasl_username="a", sasl_password=SecretStr("hunter2")
    )
    with pytest.raises(BrokerError, match="SECURITY_PROTOCOL=SASL_PLAINTEXT") as refused:
        check_plaintext(secret)
    assert "hunter2" not in str(refused.value)
    check_plaintext(KafkaSettings(security_protocol="PLAINTEXT"))
    check_plaintext(KafkaSettings())
    check_plaintext(secret.model_copy(update={"bootstrap_servers": "kafka:9093"}))
