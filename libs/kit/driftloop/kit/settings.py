"""Typed settings read from environment variables, with errors that name the variable.

Every service has one settings class with its own prefix (DRIFTLOOP_GATEWAY_...), built
from the shared pieces here. `load_settings` turns a pydantic error into a ConfigError
that says which variable is wrong and why, so a bad deployment fails at start-up with a
readable message.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    AliasChoices,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

Port = Annotated[int, Field(ge=0, le=65535)]


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def _not_empty(value: list[str]) -> list[str]:
    if not value:
        raise ValueError("at least one host:port")
    return value


# Endpoints, comma-separated in the environment ("10.0.0.1:50052,10.0.0.2:50052").
Targets = Annotated[list[str], NoDecode, BeforeValidator(_split_commas), AfterValidator(_not_empty)]


class ConfigError(Exception):
    """A setting is missing or invalid; the message names the environment variable."""


class KafkaSettings(BaseSettings):
    """How to reach Kafka. No bootstrap servers: `driftloop up` and the demo start a local
    broker; a service on its own refuses to start (`service_kafka`)."""

    model_config = SettingsConfigDict(
        env_prefix="DRIFTLOOP_KAFKA_", extra="ignore", populate_by_name=True
    )

    bootstrap_servers: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS"
        ),
    )
    topic_prefix: str = "driftloop."
    client_id: str = "driftloop"
    # Partitions of the predictions and labels topics (they must be equal: co-partitioning).
    partitions: Annotated[int, Field(ge=1, le=10_000)] = 6
    replication_factor: Annotated[int, Field(ge=1, le=10)] = 1
    security_protocol: str = "PLAINTEXT"
    request_timeout_ms: Annotated[int, Field(ge=1000)] = 30_000

    @field_validator("topic_prefix")
    @classmethod
    def _topic_prefix_chars(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9._-]{0,100}", value):
            raise ValueError("only letters, digits, '.', '_' and '-' are allowed")
        return value


class ClickHouseSettings(BaseSettings):
    """Where ClickHouse is: a server URL, or (unset) the embedded engine in `path`."""

    model_config = SettingsConfigDict(
        env_prefix="DRIFTLOOP_CLICKHOUSE_", extra="ignore", populate_by_name=True
    )

    # http(s)://user:password@host:8123 ; the password never reaches a log line.
    url: SecretStr | None = None
    path: Path = Path(".data/clickhouse")
    database: str = "driftloop"
    # Set on a ClickHouse cluster: the schema then uses Replicated engines ON CLUSTER.
    cluster: str | None = None

    @field_validator("database")
    @classmethod
    def _database_identifier(cls, value: str) -> str:
        if not IDENTIFIER.fullmatch(value):
            raise ValueError("must be an identifier (letters, digits, '_')")
        return value


class ArtifactSettings(BaseSettings):
    """Where model artifacts live (content-addressed by SHA-256)."""

    model_config = SettingsConfigDict(
        env_prefix="DRIFTLOOP_ARTIFACTS_", extra="ignore", populate_by_name=True
    )

    path: Path = Path(".data/artifacts")


class GrpcServerSettings(BaseSettings):
    """The gRPC and metrics endpoints of one service; subclasses set the prefix and port."""

    model_config = SettingsConfigDict(
        env_prefix="DRIFTLOOP_SERVICE_", extra="ignore", populate_by_name=True
    )

    host: str = "127.0.0.1"
    port: Port = 0
    # Prometheus metrics on their own port; unset: no metrics endpoint.
    metrics_port: Port | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # When set, clients must present a certificate signed by this CA (mutual TLS).
    tls_client_ca_file: Path | None = None
    # The bearer token admin RPCs require. Shared by every service.
    admin_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("DRIFTLOOP_ADMIN_TOKEN")
    )
    grace_period_s: Annotated[float, Field(ge=0, le=300)] = 10.0
    # When set, clients reconnect after this long (calls in flight get the grace period),
    # so they resolve the name again and spread over replicas added since (an
    # autoscaler's). Unset: connections live on (a long PredictStream is never cut).
    max_connection_age_s: Annotated[float, Field(ge=10)] | None = None
    max_message_bytes: Annotated[int, Field(ge=1024)] = 16 * 1024 * 1024

    @field_validator("tls_cert_file", "tls_key_file", "tls_client_ca_file")
    @classmethod
    def _file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no such file: {value}")
        return value


class LoggingSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="DRIFTLOOP_LOG_", extra="ignore", populate_by_name=True
    )

    level: str = "INFO"
    # "json" for machines (the default), "text" for a terminal.
    format: str = "json"

    @field_validator("level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        upper = value.upper()
        if upper not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return upper

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if value not in {"json", "text"}:
            raise ValueError("'json' or 'text'")
        return value


S = TypeVar("S", bound=BaseSettings)


def load_settings(cls: type[S], **overrides: Any) -> S:
    """Build `cls` from the environment (overrides win); raise ConfigError naming the variable."""
    try:
        return cls(**overrides)
    except ValidationError as error:
        raise ConfigError(_describe(cls, error)) from None


def _describe(cls: type[BaseSettings], error: ValidationError) -> str:
    prefix = str(cls.model_config.get("env_prefix", ""))
    problems = []
    for item in error.errors():
        name = str(item["loc"][0]) if item["loc"] else "?"
        field = cls.model_fields.get(name)
        alias = field.validation_alias if field is not None else None
        if isinstance(alias, AliasChoices):
            variable = str(alias.choices[0])
        elif isinstance(alias, str):
            variable = alias
        else:
            variable = (prefix + name).upper()
        reason = str(item["msg"]).removeprefix("Value error, ")
        # Inside a structured setting (a list of objects), say where: "[0].url: ...".
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in item["loc"][1:])
        if where:
            reason = f"{where.removeprefix('.')}: {reason}"
        secret = any(word in name for word in ("secret", "token", "url", "webhook"))
        shown = "" if secret else item.get("input")
        problems.append(f"{variable}={shown!r}: {reason}" if shown else f"{variable}: {reason}")
    return "invalid configuration: " + "; ".join(problems)
