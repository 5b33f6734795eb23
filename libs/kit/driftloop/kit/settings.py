"""Typed settings read from environment variables, with errors that name the variable.

Every service has one settings class with its own prefix (DRIFTLOOP_GATEWAY_...), built
from the shared pieces here. `load_settings` turns a pydantic error into a ConfigError
that says which variable is wrong and why, so a bad deployment fails at start-up with a
readable message.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AliasChoices,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
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


SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


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
        description="Kafka bootstrap servers, `host:port`, comma-separated",
        json_schema_extra={
            "default_text": "unset: `driftloop up`, `demo` and `make test` start a local "
            "broker; a service on its own refuses to start (inference starts, and sees alias "
            "moves only when its cache expires)"
        },
    )
    topic_prefix: str = Field(
        default="driftloop.", description="prefix of every topic and consumer group name"
    )
    client_id: str = Field(
        default="driftloop",
        description="Kafka client id (the admin, routing and controller clients append "
        "`-admin`, `-routing`, `-controller`)",
    )
    partitions: Annotated[int, Field(ge=1, le=10_000)] = Field(
        default=6,
        description="partitions of the predictions, labels and shadow-requests topics when "
        "driftloop creates them (predictions and labels must have as many: co-partitioning)",
    )
    replication_factor: Annotated[int, Field(ge=1, le=10)] = Field(
        default=1, description="replication factor of the topics driftloop creates"
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT",
        description="how every Kafka client (producers, consumers, admin, the faust app) "
        "talks to the brokers: `PLAINTEXT`, `SSL` (TLS), `SASL_PLAINTEXT` or `SASL_SSL` "
        "(a user and password over TLS, as managed Kafka services ask)",
    )
    ssl_ca_file: Path | None = Field(
        default=None,
        description="CA certificates (PEM) that signed the brokers' certificates, with `SSL` "
        "or `SASL_SSL`",
        json_schema_extra={"default_text": "unset: the system's trusted CAs"},
    )
    ssl_cert_file: Path | None = Field(
        default=None,
        description="client certificate (PEM), for brokers that require one (mutual TLS); "
        "with the key file",
        json_schema_extra={"default_text": "unset: no client certificate"},
    )
    ssl_key_file: Path | None = Field(
        default=None,
        description="private key (PEM) of the client certificate",
        json_schema_extra={"default_text": "unset: no client certificate"},
    )
    ssl_key_password: SecretStr | None = Field(
        default=None,
        description="password of the client certificate's key, when it is encrypted",
    )
    ssl_check_hostname: bool = Field(
        default=True,
        description="check that a broker's certificate names the host connected to; `false` "
        "only for brokers whose certificates name no reachable host",
    )
    sasl_mechanism: SaslMechanism = Field(
        default="PLAIN",
        description="SASL mechanism with `SASL_SSL` or `SASL_PLAINTEXT`: `PLAIN`, "
        "`SCRAM-SHA-256` or `SCRAM-SHA-512`",
    )
    sasl_username: str | None = Field(
        default=None,
        description="SASL user, required with `SASL_SSL` or `SASL_PLAINTEXT`",
    )
    sasl_password: SecretStr | None = Field(
        default=None,
        validate_default=True,
        description="SASL password, required with `SASL_SSL` or `SASL_PLAINTEXT`",
    )
    request_timeout_ms: Annotated[int, Field(ge=1000)] = Field(
        default=30_000, description="Kafka request timeout, milliseconds"
    )

    @field_validator("topic_prefix")
    @classmethod
    def _topic_prefix_chars(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9._-]{0,100}", value):
            raise ValueError("only letters, digits, '.', '_' and '-' are allowed")
        return value

    @field_validator("ssl_ca_file", "ssl_cert_file", "ssl_key_file")
    @classmethod
    def _kafka_file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no such file: {value}")
        return value

    @field_validator("sasl_password")
    @classmethod
    def _sasl_credentials(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        """SASL needs a user and a password; checked here (the last SASL field) so the error
        names a variable."""
        if str(info.data.get("security_protocol", "")).startswith("SASL_"):
            if not info.data.get("sasl_username"):
                raise ValueError(
                    "SASL needs DRIFTLOOP_KAFKA_SASL_USERNAME and DRIFTLOOP_KAFKA_SASL_PASSWORD"
                )
            if value is None:
                raise ValueError("required with DRIFTLOOP_KAFKA_SECURITY_PROTOCOL=SASL_...")
        return value


class ClickHouseSettings(BaseSettings):
    """Where ClickHouse is: a server URL, or (unset) the embedded engine in `path`."""

    model_config = SettingsConfigDict(
        env_prefix="DRIFTLOOP_CLICKHOUSE_", extra="ignore", populate_by_name=True
    )

    url: SecretStr | None = Field(
        default=None,
        description="`http(s)://user:password@host:8123` of a ClickHouse server (the password "
        "never reaches a log line)",
        json_schema_extra={"default_text": "unset: embedded chDB in the data folder"},
    )
    path: Path = Field(
        default=Path(".data/clickhouse"),
        description="data folder of embedded ClickHouse (one process at a time); `driftloop "
        "up` and `demo` use `<data-dir>/clickhouse` unless this or the URL is set",
    )
    database: str = Field(default="driftloop", description="database name")
    cluster: str | None = Field(
        default=None,
        description="ClickHouse cluster name: the schema is created `ON CLUSTER` with "
        "Replicated engines",
    )

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

    path: Path = Field(
        default=Path(".data/artifacts"),
        description="the content-addressed artifact store (registry and inference); `driftloop "
        "up` uses `<data-dir>/artifacts` unless this is set",
    )


class GrpcServerSettings(BaseSettings):
    """The gRPC and metrics endpoints of one service; subclasses set the prefix and port."""

    model_config = SettingsConfigDict(
        env_prefix="DRIFTLOOP_SERVICE_", extra="ignore", populate_by_name=True
    )

    host: str = Field(
        default="127.0.0.1",
        description="gRPC and metrics bind address of a service on its own (`driftloop up` "
        "binds `--host`)",
    )
    port: Port = Field(
        default=0,
        description="gRPC port (`driftloop up` uses it too; the demo and tests take free ports)",
    )
    metrics_port: Port | None = Field(
        default=None,
        description="Prometheus metrics port",
        json_schema_extra={"default_text": "unset: no metrics endpoint"},
    )
    tls_cert_file: Path | None = Field(
        default=None,
        description="server certificate (PEM); with the key file, the server speaks TLS",
        json_schema_extra={"default_text": "unset: plaintext"},
    )
    tls_key_file: Path | None = Field(
        default=None,
        description="server private key (PEM), with the certificate file",
        json_schema_extra={"default_text": "unset: plaintext"},
    )
    tls_client_ca_file: Path | None = Field(
        default=None, description="require client certificates signed by this CA (mutual TLS)"
    )
    admin_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("DRIFTLOOP_ADMIN_TOKEN"),
        description="bearer token of admin RPCs, shared by every service and sent by the "
        "client and CLI; `driftloop up` without it uses the one kept in "
        "`<data-dir>/admin-token` (made at its first start)",
        json_schema_extra={"default_text": "unset: admin RPCs refused"},
    )
    grace_period_s: Annotated[float, Field(ge=0, le=300)] = Field(
        default=10.0, description="how long SIGTERM waits for in-flight calls"
    )
    max_connection_age_s: Annotated[float, Field(ge=10)] | None = Field(
        default=None,
        description="clients reconnect after this long (calls in flight get the grace "
        "period), so they resolve the service name again and spread over replicas added "
        "since (`deploy/k8s` sets it for inference)",
        json_schema_extra={
            "default_text": "unset: connections live on (a long PredictStream is never cut)"
        },
    )
    max_message_bytes: Annotated[int, Field(ge=1024)] = Field(
        default=16 * 1024 * 1024, description="largest gRPC message, bytes"
    )

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

    level: str = Field(
        default="INFO",
        description="log level: `DEBUG`, `INFO`, `WARNING`, `ERROR` or `CRITICAL` (the "
        "`driftloop` command logs `WARNING` and up unless this is set)",
    )
    format: str = Field(
        default="json",
        description="`json` (one object per line, for machines) or `text` (for a terminal; "
        "the `driftloop` command always writes text)",
    )

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


def variables(cls: type[BaseSettings], name: str, prefix: str | None = None) -> tuple[str, ...]:
    """The environment variables a field of `cls` reads, the first one first (its aliases
    after it); `prefix` stands in for the class's own (`DRIFTLOOP_<SERVICE>_`)."""
    field = cls.model_fields.get(name)
    alias = field.validation_alias if field is not None else None
    if isinstance(alias, AliasChoices):
        return tuple(str(choice) for choice in alias.choices)
    if isinstance(alias, str):
        return (alias,)
    if prefix is None:
        prefix = str(cls.model_config.get("env_prefix", ""))
    return ((prefix + name).upper(),)


def _describe(cls: type[BaseSettings], error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        name = str(item["loc"][0]) if item["loc"] else "?"
        variable = variables(cls, name)[0]
        reason = str(item["msg"]).removeprefix("Value error, ")
        # Inside a structured setting (a list of objects), say where: "[0].url: ...".
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in item["loc"][1:])
        if where:
            reason = f"{where.removeprefix('.')}: {reason}"
        secret = any(word in name for word in ("secret", "token", "url", "webhook", "password"))
        shown = "" if secret else item.get("input")
        problems.append(f"{variable}={shown!r}: {reason}" if shown else f"{variable}: {reason}")
    return "invalid configuration: " + "; ".join(problems)
