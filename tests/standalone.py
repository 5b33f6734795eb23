"""The standalone composition as tests drive it: the five services on the real broker and
the embedded ClickHouse (driftloop.cli.stack, as the demo and `driftloop up` run them), a
client of theirs and a producer of the test's own (labels, bad records)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from driftloop.cli.stack import Services, running_services
from driftloop.clickhouse.client import ClickHouse
from driftloop.client import DriftloopClient
from driftloop.kafka.producer import EventProducer
from driftloop.kafka.topics import TopicNames
from driftloop.kit.settings import KafkaSettings
from driftloop.models.artifacts import LocalArtifactStore


@dataclass
class Standalone:
    services: Services
    client: DriftloopClient  # acting as "tester"
    producer: EventProducer
    names: TopicNames
    store: LocalArtifactStore


@contextlib.asynccontextmanager
async def standalone(
    kafka: KafkaSettings,
    clickhouse: ClickHouse,
    folder: Path,
    token: str,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> AsyncIterator[Standalone]:
    """The stack running (artifacts in `folder`), its client and a producer; all stopped on
    the way out."""
    assert kafka.bootstrap_servers is not None
    store = LocalArtifactStore(folder / "artifacts")
    producer = EventProducer(kafka, kafka.bootstrap_servers)
    await producer.start()
    try:
        async with (
            running_services(
                kafka,
                kafka.bootstrap_servers,
                clickhouse,
                store,
                SecretStr(token),
                overrides=overrides,
            ) as services,
            DriftloopClient(services.client_settings("tester")) as client,
        ):
            yield Standalone(services, client, producer, TopicNames(kafka.topic_prefix), store)
    finally:
        await producer.stop()
