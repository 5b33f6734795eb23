"""Kafka the way companies run it: the prediction log's round trip (producer -> predictions
topic -> the drift sink's consumer -> ClickHouse) through a SASL_SSL listener, with PLAIN
and SCRAM, and with both sink engines (aiokafka's BatchConsumer and the faust app). The
broker's certificate is signed by a CA this test makes; clients trust only that CA. A
listener that also requires client certificates (mutual TLS) takes the configured one."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka.errors import KafkaError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from pydantic import SecretStr

from driftloop.clickhouse.client import ClickHouse
from driftloop.clickhouse.prediction_log import PredictionLog
from driftloop.drift.faust_sink import FaustSink
from driftloop.drift.sink import LogSink
from driftloop.kafka.codecs import log_decoders
from driftloop.kafka.consumer import BatchConsumer
from driftloop.kafka.dead_letter import DeadLetters
from driftloop.kafka.local_broker import LocalBroker, SaslSslListener, find_kafka_libs
from driftloop.kafka.producer import EventProducer
from driftloop.kafka.topics import TopicNames, ensure_topics
from driftloop.kit.settings import KafkaSettings, SaslMechanism
from tests.conftest import REPO, unique_name
from tests.factories import prediction

USERS = {"alice": "alice-secret", "bob": "bob-secret"}


@dataclass(frozen=True)
class Certificates:
    ca: Path  # the CA certificate (PEM): clients trust it, and it signs client certificates
    keystore: Path  # the broker's key and certificate chain (PKCS12)
    password: str  # of the keystore and of the client's key
    client_cert: Path  # a client certificate the CA signed (PEM)
    client_key: Path  # its key (PEM, encrypted with the password)


def make_certificates(folder: Path) -> Certificates:
    """A CA; a broker certificate it signs for 127.0.0.1 and localhost; a client one."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "driftloop test CA")])

    def signed(name: x509.Name, key: ec.EllipticCurvePrivateKey) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
        )

    ca = (
        signed(ca_name, ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    broker = (
        signed(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]), key)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = signed(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "driftloop")]), client_key
    ).sign(ca_key, hashes.SHA256())
    password = "keystore-secret"
    encryption = serialization.BestAvailableEncryption(password.encode())
    paths = [folder / name for name in ("ca.pem", "broker.p12", "client.pem", "client.key")]
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(
        pkcs12.serialize_key_and_certificates(b"broker", key, broker, [ca], encryption)
    )
    paths[2].write_bytes(client.public_bytes(serialization.Encoding.PEM))
    paths[3].write_bytes(
        client_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )
    )
    return Certificates(paths[0], paths[1], password, paths[2], paths[3])


@pytest.fixture(scope="module")
def secured_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalBroker, Path]]:
    """A local broker with a SASL_SSL listener; the CA file its clients trust."""
    folder = tmp_path_factory.mktemp("kafka-sasl-ssl")
    certificates = make_certificates(folder)
    broker = LocalBroker(
        find_kafka_libs(REPO),
        folder / "broker",
        sasl_ssl=SaslSslListener(certificates.keystore, certificates.password, USERS),
    )
    broker.start()
    try:
        yield broker, certificates.ca
    finally:
        broker.stop()


def secured_settings(
    broker: LocalBroker, ca: Path, mechanism: SaslMechanism, user: str = "alice", password: str = ""
) -> KafkaSettings:
    return KafkaSettings(
        bootstrap_servers=broker.sasl_ssl_bootstrap_servers,
        topic_prefix=unique_name("secure") + ".",
        partitions=2,
        security_protocol="SASL_SSL",
        ssl_ca_file=ca,
        sasl_mechanism=mechanism,
        sasl_username=user,
        sasl_password=SecretStr(password or USERS[user]),
    )


@pytest.fixture
async def producer_of() -> AsyncIterator[list[EventProducer]]:
    started: list[EventProducer] = []
    yield started
    for producer in started:
        await producer.stop()


@pytest.mark.parametrize(
    ("mechanism", "engine"),
    [("PLAIN", "aiokafka"), ("SCRAM-SHA-256", "aiokafka"), ("SCRAM-SHA-512", "faust")],
)
async def test_the_prediction_log_round_trip_runs_through_sasl_ssl(
    secured_broker: tuple[LocalBroker, Path],
    clickhouse: ClickHouse,
    producer_of: list[EventProducer],
    mechanism: SaslMechanism,
    engine: str,
) -> None:
    broker, ca = secured_broker
    settings = secured_settings(broker, ca, mechanism)
    bootstrap = broker.sasl_ssl_bootstrap_servers
    assert await ensure_topics(settings, bootstrap)  # the admin client, through SASL_SSL
    names = TopicNames(settings.topic_prefix)
    producer = EventProducer(settings, bootstrap)
    producer_of.append(producer)
    await producer.start()
    for n in range(3):
        event = prediction(n)
        await producer.publish(names.predictions, event.request_id, event)

    log = PredictionLog(clickhouse)
    group = unique_name("secure-sink")
    handler = LogSink(log, None)
    decoders = log_decoders(names.predictions, names.labels)
    dead_letters = DeadLetters(producer, names.dead_letter, group)
    sink: BatchConsumer | FaustSink
    if engine == "faust":
        sink = FaustSink(
            settings,
            group,
            bootstrap,
            decoders=decoders,
            handler=handler,
            dead_letters=dead_letters,
            max_batch=100,
        )
    else:
        sink = BatchConsumer(
            settings,
            bootstrap,
            group_id=group,
            decoders=decoders,
            handler=handler,
            dead_letters=dead_letters,
            poll_timeout_ms=100,
        )
    await sink.start()
    task = asyncio.create_task(sink.run())
    try:
        deadline = time.monotonic() + 60
        while len(await log.last_n("churn", "1", 10)) < 3:
            assert not task.done(), f"the sink stopped: {task}"
            assert time.monotonic() < deadline, "the predictions never reached ClickHouse"
            await asyncio.sleep(0.1)
    finally:
        await sink.stop()
        await task
    rows = await log.last_n("churn", "1", 10)
    assert sorted(row["request_id"] for row in rows) == ["req-0", "req-1", "req-2"]
    assert sink.stats.dead_letters == 0


async def test_a_wrong_password_is_refused(secured_broker: tuple[LocalBroker, Path]) -> None:
    broker, ca = secured_broker
    settings = secured_settings(broker, ca, "SCRAM-SHA-256", password="not-her-password")
    with pytest.raises(KafkaError):
        await ensure_topics(settings, broker.sasl_ssl_bootstrap_servers)


async def test_a_broker_that_requires_client_certificates_accepts_the_configured_one(
    tmp_path: Path,
) -> None:
    """Mutual TLS: the listener wants a certificate its CA signed; the client presents
    DRIFTLOOP_KAFKA_SSL_CERT_FILE with its encrypted key (SSL_KEY_PASSWORD), and without
    one the broker refuses the connection."""
    certificates = make_certificates(tmp_path)
    listener = SaslSslListener(
        certificates.keystore, certificates.password, USERS, client_ca=certificates.ca
    )
    broker = LocalBroker(find_kafka_libs(REPO), tmp_path / "broker", sasl_ssl=listener)
    await asyncio.to_thread(broker.start)
    try:
        bootstrap = broker.sasl_ssl_bootstrap_servers
        without = secured_settings(broker, certificates.ca, "SCRAM-SHA-256")
        with pytest.raises(KafkaError):
            await ensure_topics(without, bootstrap)
        settings = without.model_copy(
            update={
                "ssl_cert_file": certificates.client_cert,
                "ssl_key_file": certificates.client_key,
                "ssl_key_password": SecretStr(certificates.password),
            }
        )
        assert await ensure_topics(settings, bootstrap)
        producer = EventProducer(settings, bootstrap)
        await producer.start()
        try:
            event = prediction(1)
            await producer.publish(TopicNames(settings.topic_prefix).predictions, "req-1", event)
        finally:
            await producer.stop()
    finally:
        await asyncio.to_thread(broker.stop)
