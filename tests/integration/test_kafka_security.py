"""Kafka the way companies run it: the prediction log's round trip (producer -> predictions
topic -> the drift sink's consumer -> ClickHouse) through a SASL_SSL listener, with PLAIN
and SCRAM, and with both sink engines (aiokafka's BatchConsumer and the faust app). The
broker's certificate is signed by a CA this test makes; clients trust only that CA."""

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
from driftloop.kafka.codecs import decode_label, decode_prediction
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
    ca: Path  # the CA certificate clients trust (PEM)
    keystore: Path  # the broker's key and certificate chain (PKCS12)
    password: str


def make_certificates(folder: Path) -> Certificates:
    """A CA, and a broker certificate it signs for 127.0.0.1 and localhost."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "driftloop test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    broker = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    password = "keystore-secret"
    keystore = folder / "broker.p12"
    keystore.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"broker",
            key,
            broker,
            [ca],
            serialization.BestAvailableEncryption(password.encode()),
        )
    )
    ca_file = folder / "ca.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return Certificates(ca_file, keystore, password)


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
    decoders = {names.predictions: decode_prediction, names.labels: decode_label}
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
