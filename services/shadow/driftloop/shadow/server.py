"""Composition root of the shadow service: the mirror consumer, the comparisons, gRPC.

The consumer reads `shadow-requests` (manual commits after the shadows' answers are
acknowledged on `predictions`, so a crash re-delivers, never loses; the answers are keyed
so a re-delivery is stored once). Comparisons and A/B reports are read from ClickHouse,
where the drift service logs both the live and the shadow rows; every
`compare_every_s` the current ones are stored for Grafana.
"""

from __future__ import annotations

import asyncio
import logging

from driftloop.clickhouse.client import ClickHouse
from driftloop.client.inference_pool import InferencePool
from driftloop.kafka.codecs import decode_shadow_request
from driftloop.kafka.consumer import BatchConsumer
from driftloop.kafka.dead_letter import DeadLetters
from driftloop.kafka.producer import EventProducer
from driftloop.kafka.topics import GroupNames, TopicNames
from driftloop.kit.grpc_server import GrpcServer
from driftloop.kit.settings import KafkaSettings
from driftloop.shadow.adapters import InferenceShadowModels, KafkaShadowEvents
from driftloop.shadow.config import ShadowSettings
from driftloop.shadow.mirror import Mirror, MirrorSettings
from driftloop.shadow.reports import Reports
from driftloop.shadow.servicer import ShadowServicer
from driftloop.shadow.store import ShadowStore
from driftloop.v1 import shadow_pb2

log = logging.getLogger(__name__)


class ShadowService:
    """ClickHouse is passed in, so one process (standalone mode) can share its embedded
    engine between services."""

    def __init__(
        self,
        settings: ShadowSettings,
        kafka: KafkaSettings,
        bootstrap_servers: str,
        clickhouse: ClickHouse,
    ) -> None:
        self._settings = settings
        names = TopicNames(kafka.topic_prefix)
        self._producer = EventProducer(kafka, bootstrap_servers)
        self._pool = InferencePool(
            settings.inference_targets, tls_ca_file=settings.inference_tls_ca_file
        )
        self.mirror = Mirror(
            InferenceShadowModels(self._pool),
            KafkaShadowEvents(self._producer, names.predictions),
            MirrorSettings(
                timeout_s=settings.call_timeout_s,
                concurrency=settings.concurrency,
                max_lag_s=settings.max_lag_s,
                min_share=settings.min_share,
            ),
        )
        group = GroupNames(kafka.topic_prefix).shadow
        self.consumer = BatchConsumer(
            kafka,
            bootstrap_servers,
            group_id=group,
            decoders={names.shadow_requests: decode_shadow_request},
            handler=self.mirror,
            dead_letters=DeadLetters(self._producer, names.dead_letter, group),
            max_batch=settings.batch,
        )
        self.reports = Reports(ShadowStore(clickhouse), self.mirror.state)
        self._server = GrpcServer("shadow", settings)
        self._server.add_service(
            shadow_pb2.DESCRIPTOR.services_by_name["ShadowService"],
            ShadowServicer(self.reports, self.mirror.state),
        )
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def port(self) -> int:
        return self._server.port

    async def start(self) -> int:
        await self._producer.start()
        await self.consumer.start()
        self._tasks = [
            asyncio.create_task(self.consumer.run(), name="shadow mirror"),
            asyncio.create_task(
                self.reports.run(self._settings.compare_every_s, self._settings.compare_window_s),
                name="shadow comparisons",
            ),
        ]
        port = await self._server.start()
        await self._server.set_ready()
        return port

    async def stop(self, grace: float | None = None) -> None:
        await self._server.stop(grace)
        for task in self._tasks:
            if task.get_name() == "shadow comparisons":
                task.cancel()
        await self.consumer.stop()  # finishes the batch in hand, then commits
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._producer.stop()
        await self._pool.close()
