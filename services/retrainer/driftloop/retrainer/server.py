"""Composition root of the retrainer service: the model registry and continuous training.

Builds the registry, the run store, the training pipeline (its heavy work in a worker
process), the controller, the drift-alerts consumer (manual commits after the decision is
recorded), the model-events follower (rollout outcomes) and the periodic trigger check,
and serves the ModelRegistry and Retrainer gRPC services.
"""

from __future__ import annotations

import asyncio
import logging

from driftloop.clickhouse.client import ClickHouse
from driftloop.clickhouse.prediction_log import PredictionLog
from driftloop.kafka.codecs import decode_drift_alert, decode_model_event
from driftloop.kafka.consumer import BatchConsumer
from driftloop.kafka.dead_letter import DeadLetters
from driftloop.kafka.producer import EventProducer
from driftloop.kafka.tail import TopicTail
from driftloop.kafka.topics import GroupNames, TopicNames
from driftloop.kit.grpc_client import open_channel
from driftloop.kit.grpc_server import GrpcServer
from driftloop.kit.settings import KafkaSettings
from driftloop.models.artifacts import LocalArtifactStore
from driftloop.retrainer.adapters import GatewayRollouts
from driftloop.retrainer.config import RetrainerSettings
from driftloop.retrainer.controller import Controller
from driftloop.retrainer.events import KafkaModelEvents
from driftloop.retrainer.jobs import TrainJob, TrainResult
from driftloop.retrainer.pipeline import Pipeline, ProcessWorker
from driftloop.retrainer.registry import Registry
from driftloop.retrainer.runs_store import RunStore
from driftloop.retrainer.servicer import RegistryServicer, RetrainerServicer
from driftloop.retrainer.store import ClickHouseRegistryStore
from driftloop.v1 import registry_pb2, retrainer_pb2

log = logging.getLogger(__name__)


class RetrainerService:
    """ClickHouse and the artifact store are passed in, so one process (standalone mode)
    can share its embedded ClickHouse between services."""

    def __init__(
        self,
        settings: RetrainerSettings,
        kafka: KafkaSettings,
        bootstrap_servers: str,
        clickhouse: ClickHouse,
        artifacts: LocalArtifactStore,
    ) -> None:
        self._settings = settings
        names = TopicNames(kafka.topic_prefix)
        token = settings.admin_token.get_secret_value() if settings.admin_token else ""
        self._producer = EventProducer(kafka, bootstrap_servers)
        events = KafkaModelEvents(self._producer, names.model_events)
        self.registry = Registry(ClickHouseRegistryStore(clickhouse), artifacts, events)
        self.runs = RunStore(clickhouse)
        self._gateway_channel = open_channel(
            settings.gateway_target, tls_ca_file=settings.gateway_tls_ca_file
        )
        self._worker: ProcessWorker | None = None
        pipeline = Pipeline(
            self.registry,
            artifacts,
            artifacts.root,
            PredictionLog(clickhouse),
            self.runs,
            GatewayRollouts(self._gateway_channel, token, settings.gateway_timeout_s),
            self._train,
        )
        self.controller = Controller(
            self.runs,
            self.registry,
            self.registry.models,
            PredictionLog(clickhouse),
            pipeline,
            events,
        )
        self._server = GrpcServer("retrainer", settings)
        self._server.add_service(
            registry_pb2.DESCRIPTOR.services_by_name["ModelRegistry"],
            RegistryServicer(self.registry, settings.max_artifact_bytes),
        )
        self._server.add_service(
            retrainer_pb2.DESCRIPTOR.services_by_name["Retrainer"],
            RetrainerServicer(self.controller, self.runs),
        )
        group = GroupNames(kafka.topic_prefix).retrainer
        # The triggers' inputs, only for a retrainer that trains (a consumer made and never
        # started would never be closed).
        self._followers = (
            (
                BatchConsumer(
                    kafka,
                    bootstrap_servers,
                    group_id=group,
                    decoders={names.drift_alerts: decode_drift_alert},
                    handler=self.controller.on_alerts,
                    dead_letters=DeadLetters(self._producer, names.dead_letter, group),
                    max_batch=100,
                ),
                TopicTail(
                    kafka,
                    bootstrap_servers,
                    names.model_events,
                    decode_model_event,
                    self.controller.on_model_event,
                    from_beginning=True,  # outcomes announced while this process was down
                ),
            )
            if settings.training
            else None
        )
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def port(self) -> int:
        return self._server.port

    async def start(self) -> int:
        await self._producer.start()
        port = await self._server.start()
        if self._followers is not None:
            alerts, model_events = self._followers
            self._worker = ProcessWorker()
            await self.controller.recover()
            await alerts.start()
            await model_events.start()
            self._tasks = [
                asyncio.create_task(alerts.run(), name="drift alerts"),
                asyncio.create_task(self._check_periodically(), name="retrain triggers"),
            ]
        await self._server.set_ready()
        return port

    async def stop(self, grace: float | None = None) -> None:
        await self._server.stop(grace)
        if self._followers is not None:
            alerts, model_events = self._followers
            for task in self._tasks:
                if task.get_name() == "retrain triggers":
                    task.cancel()
            await alerts.stop()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await model_events.stop()
            await self.controller.cancel_runs()
        if self._worker is not None:
            await self._worker.close()
        await self._producer.stop()
        await self._gateway_channel.close()

    async def _train(self, job: TrainJob) -> TrainResult:
        assert self._worker is not None, "training is off in this retrainer"
        return await self._worker(job)

    async def _check_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._settings.check_every_s)
            try:
                await self.controller.check()
            except Exception:  # a failed round is retried at the next, never fatal
                log.exception("the periodic retraining check failed; retrying next round")
