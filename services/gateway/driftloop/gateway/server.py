"""Composition root of the gateway."""

from __future__ import annotations

import asyncio
import logging

from google.protobuf.message import Message

from driftloop.client.coalescing import InferenceCoalescer
from driftloop.client.inference_pool import InferencePool
from driftloop.client.registry import RegistryClient, ServiceCall
from driftloop.gateway import metrics
from driftloop.gateway.adapters import (
    DriftQuality,
    InferenceLoader,
    KafkaEvents,
    RegistryChampions,
    RegistryVersions,
    ShadowComparisons,
)
from driftloop.gateway.buffer import EventBuffer
from driftloop.gateway.canary import TrafficRecorder
from driftloop.gateway.champions import ServedPolicies
from driftloop.gateway.config import GatewaySettings
from driftloop.gateway.lease import ControllerLease
from driftloop.gateway.oip import InferenceServicer
from driftloop.gateway.policies import PolicyBook
from driftloop.gateway.policy_topic import PolicyTopic
from driftloop.gateway.rollouts import NO_QUALITY, Rollouts, RolloutStart, default_plan
from driftloop.gateway.servicer import GatewayServicer
from driftloop.gateway.serving import PredictionService
from driftloop.kafka.codecs import decode_model_event
from driftloop.kafka.producer import EventProducer
from driftloop.kafka.tail import TopicTail
from driftloop.kafka.topics import GroupNames, TopicNames
from driftloop.kit.grpc_client import open_channel
from driftloop.kit.grpc_server import GrpcServer
from driftloop.kit.settings import KafkaSettings
from driftloop.oip.v2 import grpc_predict_v2_pb2 as oip_pb2
from driftloop.v1 import events_pb2, gateway_pb2

log = logging.getLogger(__name__)

REGISTRY_TIMEOUT_S = 10.0


class GatewayService:
    def __init__(
        self, settings: GatewaySettings, kafka: KafkaSettings, bootstrap_servers: str
    ) -> None:
        self._settings = settings
        names = TopicNames(kafka.topic_prefix)
        token = settings.admin_token.get_secret_value() if settings.admin_token else ""
        self._producer = EventProducer(kafka, bootstrap_servers)
        # Prediction logging gets a producer of its own: its short timeout surfaces a
        # broker outage quickly without touching the producer of policies and events.
        self._log_producer = EventProducer(
            kafka, bootstrap_servers, request_timeout_ms=5000, linger_ms=20
        )
        self.book = PolicyBook()
        self.pool = InferencePool(
            settings.inference_targets, tls_ca_file=settings.inference_tls_ca_file
        )
        self.prediction_log = EventBuffer(
            self._log_producer,
            names.predictions,
            capacity=settings.log_buffer,
            name="prediction log",
            on_dropped=lambda reason, records: metrics.LOG_DROPPED.labels(reason).inc(records),
        )
        self.shadow_mirror = EventBuffer(
            self._log_producer,
            names.shadow_requests,
            capacity=settings.shadow_buffer,
            name="shadow mirror",
            on_dropped=lambda reason, records: metrics.SHADOW_DROPPED.labels(reason).inc(records),
        )
        self.recorder = TrafficRecorder()
        self._registry_channel = open_channel(settings.registry_target)
        registry = RegistryClient(
            self._registry_channel, ServiceCall(REGISTRY_TIMEOUT_S, token, actor="gateway")
        )
        champions = RegistryChampions(registry)
        self.served = ServedPolicies(self.book, champions)
        versions = RegistryVersions(registry)
        loader = InferenceLoader(self.pool, token)
        # Calls to inference share PredictBatch calls when they pile up (coalescing.py).
        self._inference = InferenceCoalescer(
            self.pool, max_in_flight=settings.inference_calls_in_flight
        )
        self.serving = PredictionService(
            self._inference,
            self.prediction_log,
            self.shadow_mirror,
            self.recorder,
            settings.request_timeout_s,
            self.served,
        )
        self.policy_topic = PolicyTopic(
            kafka,
            bootstrap_servers,
            names.routing,
            self._producer,
            self.book,
            versions,
        )
        self._drift_channel = open_channel(settings.drift_target) if settings.drift_target else None
        self._shadow_channel = (
            open_channel(settings.shadow_target) if settings.shadow_target else None
        )
        self.rollouts = Rollouts(
            self.book,
            self.policy_topic,
            KafkaEvents(self._producer, names.model_events),
            champions,
            loader,
            self.recorder,
            defaults=default_plan(
                min_requests=settings.canary_min_requests,
                min_duration_s=settings.canary_min_duration_s,
                max_error_rate_increase=settings.canary_max_error_rate_increase,
                max_p99_latency_ratio=settings.canary_max_p99_latency_ratio,
                max_output_distance=settings.canary_max_output_distance,
                min_labelled_before_promotion=settings.canary_min_labelled_before_promotion,
            ),
            hold_default_s=settings.blue_green_hold_s,
            quality=DriftQuality(self._drift_channel) if self._drift_channel else None,
            shadow=ShadowComparisons(self._shadow_channel) if self._shadow_channel else None,
            served=self.served,
        )
        self.lease = ControllerLease(
            kafka,
            bootstrap_servers,
            names.routing,
            GroupNames(kafka.topic_prefix).gateway_controller,
        )
        self._model_events = TopicTail(
            kafka, bootstrap_servers, names.model_events, decode_model_event, self._on_event
        )
        self._server = GrpcServer("gateway", settings)
        self._ready = asyncio.Event()  # ServerReady: set with the health check's SERVING
        self._server.add_service(
            gateway_pb2.DESCRIPTOR.services_by_name["Gateway"],
            GatewayServicer(self.serving, self.rollouts, settings.max_batch_requests),
        )
        self._server.add_service(
            oip_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"],
            InferenceServicer(
                self.serving, versions, loader, self._ready.is_set, settings.max_batch_requests
            ),
        )
        self._controller: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        return self._server.port

    async def start(self) -> int:
        if self._settings.auto_rollout != "off" and not self.rollouts.has_quality_check:
            log.warning(
                "auto-rollout (%s) with %s: set DRIFTLOOP_GATEWAY_DRIFT_TARGET for the drift "
                "service's canary analysis",
                self._settings.auto_rollout,
                NO_QUALITY,
            )
        await self._producer.start()
        await self._log_producer.start()
        self.prediction_log.start()
        self.shadow_mirror.start()
        await self.policy_topic.start()
        await self.lease.start()
        await self._model_events.start()
        port = await self._server.start()
        await self.policy_topic.caught_up.wait()
        await self._server.set_ready()
        self._ready.set()
        self._controller = asyncio.create_task(self._control(), name="rollout controller")
        return port

    async def stop(self, grace: float | None = None) -> None:
        if self._controller is not None:
            self._controller.cancel()
            await asyncio.gather(self._controller, return_exceptions=True)
        self._ready.clear()
        await self._server.stop(grace)
        await self._inference.close()
        await self.prediction_log.stop()
        await self.shadow_mirror.stop()
        await self._model_events.stop()
        await self.lease.stop()
        await self.policy_topic.stop()
        await self._log_producer.stop()
        await self._producer.stop()
        await self.pool.close()
        await self.served.close()
        await self._registry_channel.close()
        for channel in (self._drift_channel, self._shadow_channel):
            if channel is not None:
                await channel.close()

    async def _control(self) -> None:
        while True:
            await asyncio.sleep(self._settings.controller_interval_s)
            if self.lease.held:
                await self.rollouts.tick()

    async def _on_event(self, event: Message) -> None:
        assert isinstance(event, events_pb2.ModelEvent)
        if event.kind == events_pb2.MODEL_EVENT_KIND_ALIAS_MOVED:
            self.served.alias_moved(event.model, event.alias, event.version)
        mode = self._settings.auto_rollout
        if (
            mode == "off"
            or event.kind != events_pb2.MODEL_EVENT_KIND_REGISTERED
            or not self.lease.held
        ):
            return
        if self.book.get(event.model) is None:
            return
        request = RolloutStart(
            model=event.model,
            candidate_version=event.version,
            strategy="canary" if mode == "canary" else "blue_green",
            hold_s=self._settings.blue_green_hold_s,
            reason=f"version {event.version} registered ({event.reason})",
        )
        try:
            await self.rollouts.start(request, "controller")
        except Exception:
            log.exception(
                "could not start the %s rollout of %s v%s", mode, event.model, event.version
            )
