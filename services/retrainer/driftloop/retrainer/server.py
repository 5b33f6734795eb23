"""Composition root of the retrainer service: builds the registry and serves it."""

from __future__ import annotations

import logging

from driftloop.clickhouse.client import ClickHouse
from driftloop.kafka.producer import EventProducer
from driftloop.kafka.topics import TopicNames
from driftloop.kit.grpc_server import GrpcServer
from driftloop.kit.settings import KafkaSettings
from driftloop.models.artifacts import ArtifactStore
from driftloop.retrainer.config import RetrainerSettings
from driftloop.retrainer.events import KafkaModelEvents
from driftloop.retrainer.registry import Registry
from driftloop.retrainer.servicer import RegistryServicer
from driftloop.retrainer.store import ClickHouseRegistryStore
from driftloop.v1 import registry_pb2

log = logging.getLogger(__name__)


class RetrainerService:
    """The registry over gRPC. ClickHouse and the artifact store are passed in, so one
    process (standalone mode) can share its embedded ClickHouse between services."""

    def __init__(
        self,
        settings: RetrainerSettings,
        kafka: KafkaSettings,
        bootstrap_servers: str,
        clickhouse: ClickHouse,
        artifacts: ArtifactStore,
    ) -> None:
        self._producer = EventProducer(kafka, bootstrap_servers)
        events = KafkaModelEvents(self._producer, TopicNames(kafka.topic_prefix).model_events)
        self.registry = Registry(ClickHouseRegistryStore(clickhouse), artifacts, events)
        self._server = GrpcServer("retrainer", settings)
        servicer = RegistryServicer(self.registry, settings.max_artifact_bytes)
        self._server.add_service(
            registry_pb2.DESCRIPTOR.services_by_name["ModelRegistry"], servicer
        )

    @property
    def port(self) -> int:
        return self._server.port

    async def start(self) -> int:
        await self._producer.start()
        port = await self._server.start()
        await self._server.set_ready()
        return port

    async def stop(self, grace: float | None = None) -> None:
        await self._server.stop(grace)
        await self._producer.stop()
