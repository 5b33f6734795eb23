"""The one place driftloop makes Kafka clients: every producer, consumer and admin client,
and the drift sink's faust app, get their address, client id, request timeout and
security (TLS, SASL) from the same KafkaSettings, so a cluster that asks for SASL_SSL is
reached the same way by all of them.

`DRIFTLOOP_KAFKA_SECURITY_PROTOCOL` picks the protocol; with `SSL` or `SASL_SSL` the TLS
context trusts `SSL_CA_FILE` (else the system's CAs) and presents `SSL_CERT_FILE` when the
brokers want a client certificate; with `SASL_*` the user and password go with the
configured mechanism (PLAIN or SCRAM-SHA-256/512). Passwords are SecretStr until the
moment a client needs them.
"""

from __future__ import annotations

import ssl
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.helpers import create_ssl_context

from driftloop.kit.settings import KafkaSettings


def tls_context(settings: KafkaSettings) -> ssl.SSLContext:
    """The TLS context of `SSL` and `SASL_SSL`: the configured CA (else the system's), the
    client certificate when one is configured, hostname checks unless turned off."""
    password = settings.ssl_key_password
    context: ssl.SSLContext = create_ssl_context(
        cafile=settings.ssl_ca_file,
        certfile=settings.ssl_cert_file,
        keyfile=settings.ssl_key_file,
        password=password.get_secret_value() if password is not None else None,
    )
    context.check_hostname = settings.ssl_check_hostname
    return context


def security_options(settings: KafkaSettings) -> dict[str, Any]:
    """aiokafka's keyword arguments for the configured security protocol."""
    protocol = settings.security_protocol
    options: dict[str, Any] = {"security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = tls_context(settings)
    if protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
        assert settings.sasl_password is not None  # KafkaSettings refuses SASL without one
        options |= {
            "sasl_mechanism": settings.sasl_mechanism,
            "sasl_plain_username": settings.sasl_username,
            "sasl_plain_password": settings.sasl_password.get_secret_value(),
        }
    return options


def _options(
    settings: KafkaSettings, bootstrap_servers: str, options: dict[str, Any]
) -> dict[str, Any]:
    """The settings every client shares; a caller's own options win."""
    return {
        "bootstrap_servers": bootstrap_servers,
        "client_id": settings.client_id,
        "request_timeout_ms": settings.request_timeout_ms,
        **security_options(settings),
        **options,
    }


def make_producer(
    settings: KafkaSettings, bootstrap_servers: str, **options: Any
) -> AIOKafkaProducer:
    return AIOKafkaProducer(**_options(settings, bootstrap_servers, options))


def make_consumer(
    settings: KafkaSettings, bootstrap_servers: str, *topics: str, **options: Any
) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(*topics, **_options(settings, bootstrap_servers, options))


def make_admin(
    settings: KafkaSettings, bootstrap_servers: str, **options: Any
) -> AIOKafkaAdminClient:
    options.setdefault("client_id", f"{settings.client_id}-admin")
    return AIOKafkaAdminClient(**_options(settings, bootstrap_servers, options))


def faust_options(settings: KafkaSettings, bootstrap_servers: str) -> dict[str, Any]:
    """faust.App's broker settings: the broker URLs and the same security as every other
    client (faust hands its credentials to the aiokafka clients it makes)."""
    from faust.auth import SASLCredentials, SSLCredentials  # only the drift sink uses faust

    credentials: SASLCredentials | SSLCredentials | None = None
    protocol = settings.security_protocol
    if protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
        assert settings.sasl_password is not None  # KafkaSettings refuses SASL without one
        credentials = SASLCredentials(
            username=settings.sasl_username,
            password=settings.sasl_password.get_secret_value(),
            ssl_context=tls_context(settings) if protocol == "SASL_SSL" else None,
            mechanism=settings.sasl_mechanism,
        )
    elif protocol == "SSL":
        credentials = SSLCredentials(tls_context(settings))
    return {
        "broker": [f"kafka://{server.strip()}" for server in bootstrap_servers.split(",")],
        "broker_client_id": settings.client_id,
        "broker_credentials": credentials,
    }
