from __future__ import annotations

from pathlib import Path

import pytest
from pydantic_settings import SettingsConfigDict

from driftloop.cli.configuration import SERVICES
from driftloop.kit.settings import (
    ClickHouseSettings,
    ConfigError,
    GrpcServerSettings,
    KafkaSettings,
    LoggingSettings,
    load_settings,
)


class GatewaySettings(GrpcServerSettings):
    model_config = SettingsConfigDict(env_prefix="DRIFTLOOP_GATEWAY_", extra="ignore")


def test_reads_the_service_prefix_and_shared_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTLOOP_GATEWAY_PORT", "50051")
    monkeypatch.setenv("DRIFTLOOP_GATEWAY_METRICS_PORT", "9100")
    monkeypatch.setenv("DRIFTLOOP_ADMIN_TOKEN", "s3cret")
    settings = load_settings(GatewaySettings)
    assert settings.port == 50051
    assert settings.metrics_port == 9100
    assert settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)


def test_a_bad_variable_is_named_with_its_value_and_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DRIFTLOOP_GATEWAY_PORT", "eighty")
    with pytest.raises(ConfigError) as error:
        load_settings(GatewaySettings)
    message = str(error.value)
    assert "DRIFTLOOP_GATEWAY_PORT='eighty'" in message
    assert "valid integer" in message


def test_out_of_range_and_missing_files_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DRIFTLOOP_GATEWAY_PORT", "70000")
    monkeypatch.setenv("DRIFTLOOP_GATEWAY_TLS_CERT_FILE", str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigError) as error:
        load_settings(GatewaySettings)
    message = str(error.value)
    assert "DRIFTLOOP_GATEWAY_PORT" in message
    assert "DRIFTLOOP_GATEWAY_TLS_CERT_FILE" in message
    assert "no such file" in message


def test_secrets_never_appear_in_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTLOOP_CLICKHOUSE_URL", "http://user:hunter2@host:8123")
    monkeypatch.setenv("DRIFTLOOP_CLICKHOUSE_DATABASE", "bad name;")
    with pytest.raises(ConfigError) as error:
        load_settings(ClickHouseSettings)
    assert "DRIFTLOOP_CLICKHOUSE_DATABASE" in str(error.value)
    assert "hunter2" not in str(error.value)


def test_kafka_bootstrap_accepts_the_plain_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker:9092")
    assert load_settings(KafkaSettings).bootstrap_servers == "broker:9092"
    monkeypatch.setenv("DRIFTLOOP_KAFKA_TOPIC_PREFIX", "bad prefix!")
    with pytest.raises(ConfigError, match="DRIFTLOOP_KAFKA_TOPIC_PREFIX"):
        load_settings(KafkaSettings)


def test_defaults_are_the_standalone_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS",
        "KAFKA_BOOTSTRAP_SERVERS",
        "DRIFTLOOP_CLICKHOUSE_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    assert load_settings(KafkaSettings).bootstrap_servers is None
    clickhouse = load_settings(ClickHouseSettings)
    assert clickhouse.url is None
    assert clickhouse.database == "driftloop"
    assert load_settings(LoggingSettings, level="debug").level == "DEBUG"


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_service_port_is_a_port(service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(f"DRIFTLOOP_{service.upper()}_PORT", "70000")
    with pytest.raises(ConfigError, match=f"DRIFTLOOP_{service.upper()}_PORT='70000'"):
        load_settings(SERVICES[service][1])
