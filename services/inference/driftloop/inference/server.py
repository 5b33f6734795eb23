"""Composition root of the inference service."""

from __future__ import annotations

import asyncio
import logging

from google.protobuf.message import Message

from driftloop.client.registry import RegistryClient, ServiceCall
from driftloop.inference import metrics
from driftloop.inference.config import InferenceSettings
from driftloop.inference.host import ModelHost
from driftloop.inference.registry_client import RegistryVersions
from driftloop.inference.servicer import InferenceServicer
from driftloop.kafka.codecs import decode_model_event
from driftloop.kafka.tail import TopicTail
from driftloop.kafka.topics import TopicNames
from driftloop.kit.grpc_client import open_channel
from driftloop.kit.grpc_server import GrpcServer
from driftloop.kit.settings import KafkaSettings
from driftloop.models.artifacts import ArtifactStore
from driftloop.v1 import events_pb2, inference_pb2

log = logging.getLogger(__name__)


class InferenceService:
    def __init__(
        self,
        settings: InferenceSettings,
        artifacts: ArtifactStore,
        kafka: KafkaSettings | None = None,
        bootstrap_servers: str | None = None,
    ) -> None:
        self._settings = settings
        self._channel = open_channel(
            settings.registry_target, tls_ca_file=settings.registry_tls_ca_file
        )
        self.host = ModelHost(
            RegistryVersions(
                RegistryClient(self._channel, ServiceCall(settings.registry_timeout_s))
            ),
            artifacts,
            max_loaded=settings.max_loaded,
            load_wait_s=settings.load_wait_s,
        )
        self._server = GrpcServer("inference", settings)
        servicer = InferenceServicer(self.host, settings.max_batch_rows)
        self._server.add_service(
            inference_pb2.DESCRIPTOR.services_by_name["InferenceService"], servicer
        )
        self._events: TopicTail | None = None
        if kafka is not None and bootstrap_servers is not None:
            self._events = TopicTail(
                kafka,
                bootstrap_servers,
                TopicNames(kafka.topic_prefix).model_events,
                decode_model_event,
                self._on_model_event,
            )
        self._preloading: asyncio.Task[None] | None = None
        metrics.LOADED.set_function(lambda: sum(h.state == "ready" for h in self.host.statuses()))

    @property
    def port(self) -> int:
        return self._server.port

    async def start(self) -> int:
        """Serve at once; health turns SERVING when the preloaded versions are ready."""
        if self._events is not None:
            await self._events.start()
        port = await self._server.start()
        self._preloading = asyncio.create_task(self._preload())
        return port

    async def _preload(self) -> None:
        refs = [item.partition(":")[::2] for item in self._settings.preload]
        while True:
            results = await asyncio.gather(
                *(self.host.load(model, ref) for model, ref in refs), return_exceptions=True
            )
            failed = [r for r in results if isinstance(r, BaseException) or r.state != "ready"]
            if not failed:
                await self._server.set_ready()
                return
            retry = self._settings.preload_retry_s
            log.warning(
                "preloading failed for %d of %d versions; retrying in %g s",
                len(failed),
                len(refs),
                retry,
            )
            await asyncio.sleep(retry)

    async def _on_model_event(self, event: Message) -> None:
        assert isinstance(event, events_pb2.ModelEvent)
        if event.kind == events_pb2.MODEL_EVENT_KIND_ALIAS_MOVED:
            self.host.alias_moved(event.model, event.alias, event.version)

    async def stop(self, grace: float | None = None) -> None:
        if self._preloading is not None:
            self._preloading.cancel()
            await asyncio.gather(self._preloading, return_exceptions=True)
        await self._server.stop(grace)
        if self._events is not None:
            await self._events.stop()
        await self.host.close()
        await self._channel.close()
