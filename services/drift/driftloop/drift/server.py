"""Composition root of the drift service: the sink consumer, online detection, the
periodic windowed evaluation, alerts, the model events' store (the rollout history),
alerts to webhooks (when configured) and the DriftService gRPC server."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from driftloop.clickhouse.client import ClickHouse
from driftloop.clickhouse.prediction_log import PredictionLog
from driftloop.client.registry import RegistryClient, ServiceCall
from driftloop.drift import metrics
from driftloop.drift.alerts import KIND_NAMES, SEVERITY_NAMES, STATE_NAMES, Alerts
from driftloop.drift.baselines import RegistryBaselines
from driftloop.drift.canary import CanaryAnalysis, CanaryLimits
from driftloop.drift.config import DriftSettings
from driftloop.drift.deliveries import ClickHouseLedger, HttpTransport
from driftloop.drift.detection import OnlineDetection
from driftloop.drift.evaluator import Evaluator
from driftloop.drift.faust_sink import FaustSink
from driftloop.drift.history import HistoryReader
from driftloop.drift.labels import LabelJoin
from driftloop.drift.model_events import ModelEventLog
from driftloop.drift.online import OnlineAlarm
from driftloop.drift.ordering import ReorderBuffer
from driftloop.drift.report import Thresholds
from driftloop.drift.servicer import DriftServicer
from driftloop.drift.sink import LogSink
from driftloop.drift.store import DriftStore
from driftloop.drift.webhooks import RetryPolicy, WebhookSender
from driftloop.drift.windows import WindowReader
from driftloop.kafka.codecs import (
    Decoder,
    decode_drift_alert,
    decode_model_event,
    log_decoders,
)
from driftloop.kafka.consumer import BatchConsumer, BatchHandler, Probe
from driftloop.kafka.dead_letter import DeadLetters
from driftloop.kafka.producer import EventProducer
from driftloop.kafka.topics import GroupNames, TopicNames
from driftloop.kit.grpc_client import open_channel
from driftloop.kit.grpc_server import GrpcServer
from driftloop.kit.settings import KafkaSettings
from driftloop.v1 import drift_pb2, events_pb2

log = logging.getLogger(__name__)

# Model events per insert at most (the topic has one partition and few events).
MODEL_EVENTS_BATCH = 1000


def thresholds_of(settings: DriftSettings) -> Thresholds:
    return Thresholds(
        fdr_alpha=settings.fdr_alpha,
        psi_threshold=settings.psi_threshold,
        psi_major=settings.psi_major,
        effect_threshold=settings.effect_threshold,
        negligible=settings.negligible,
        dataset_drift_share=settings.dataset_drift_share,
        concept_tolerance=settings.concept_tolerance,
        concept_min_labelled=settings.concept_min_labelled,
    )


class DriftService:
    """ClickHouse is passed in, so one process (standalone mode) shares its embedded
    engine between services."""

    def __init__(
        self,
        settings: DriftSettings,
        kafka: KafkaSettings,
        bootstrap_servers: str,
        clickhouse: ClickHouse,
    ) -> None:
        self._settings = settings
        self._kafka = kafka
        self._bootstrap_servers = bootstrap_servers
        self._names = TopicNames(kafka.topic_prefix)
        self._groups = GroupNames(kafka.topic_prefix)
        self._producer = EventProducer(kafka, bootstrap_servers)
        self.store = DriftStore(clickhouse)
        self._registry_channel = open_channel(settings.registry_target)
        self.baselines = RegistryBaselines(
            RegistryClient(self._registry_channel, ServiceCall(settings.registry_timeout_s))
        )
        self.alerts = Alerts(
            self._publish_alert, settings.alert_debounce_s, settings.alert_quiet_events
        )
        self.join = LabelJoin(
            settings.label_horizon_s,
            settings.label_pending_per_partition,
            evicted=lambda reason, entries: metrics.LABEL_JOIN_EVICTED.labels(reason).inc(entries),
        )
        self.detection = OnlineDetection(
            self.baselines,
            self.join,
            self.alerts,
            settings.online_false_alarm_events,
            self._record_alarm,
            ReorderBuffer(
                round(settings.online_reorder_window_s * 1e6),
                settings.online_reorder_max_events,
                settings.online_reorder_idle_s,
            ),
            lambda: self.consumer.assigned(self._names.predictions),
        )
        decoders = log_decoders(self._names.predictions, self._names.labels)
        group = self._groups.drift_sink
        handler = LogSink(
            PredictionLog(clickhouse), self.detection, lambda rows: self.evaluator.arrived(rows)
        )
        self.consumer: BatchConsumer | FaustSink
        if settings.sink_engine == "faust":
            self.consumer = FaustSink(
                kafka,
                group,
                bootstrap_servers,
                decoders=decoders,
                handler=handler,
                dead_letters=self._dead_letters(group),
                max_batch=settings.sink_batch,
                probe=handler.probe,
            )
        else:
            self.consumer = self._batch_consumer(
                group,
                decoders,
                handler,
                handler.probe,
                settings.sink_batch,
                max_partition_fetch_bytes=8 * 1024 * 1024,
                fetch_max_bytes=64 * 1024 * 1024,
            )
        # The rollout history: every model event into model_events, always on (one
        # partition, a few events an hour).
        events = ModelEventLog(clickhouse)
        self.model_events = self._batch_consumer(
            self._groups.drift_model_events,
            {self._names.model_events: decode_model_event},
            events,
            events.probe,
            MODEL_EVENTS_BATCH,
        )
        self.evaluator = Evaluator(
            WindowReader(clickhouse),
            self.store,
            self.baselines,
            self.alerts,
            thresholds_of(settings),
            settings.window_last_n,
            settings.window_min_rows,
            dt.timedelta(seconds=settings.time_window_s),
            (
                settings.window_last_n
                if settings.evaluate_every_rows is None
                else settings.evaluate_every_rows
            ),
        )
        self._server = GrpcServer("drift", settings)
        self._server.add_service(
            drift_pb2.DESCRIPTOR.services_by_name["DriftService"],
            DriftServicer(
                self.evaluator,
                self.baselines,
                self.store,
                CanaryAnalysis(
                    clickhouse,
                    CanaryLimits(
                        alpha=settings.canary_alpha,
                        min_requests=settings.canary_min_requests,
                        min_labelled=settings.canary_min_labelled,
                    ),
                ),
                HistoryReader(clickhouse),
                settings.window_last_n,
            ),
        )
        self._tasks: list[asyncio.Task[None]] = []
        metrics.LABELS_PENDING.set_function(lambda: self.join.pending)
        self.webhooks: WebhookSender | None = None
        self._webhook_consumer: BatchConsumer | None = None
        self._http = HttpTransport()
        if settings.webhooks:
            self._build_webhooks(clickhouse)

    def _build_webhooks(self, clickhouse: ClickHouse) -> None:
        """Alerts to webhooks: a consumer group of its own on drift-alerts and model-events,
        committed after every event of a batch has its outcome in the ledger."""
        settings = self._settings
        policy = RetryPolicy(
            timeout_s=settings.webhook_timeout_s,
            max_attempts=settings.webhook_max_attempts,
            backoff_s=settings.webhook_backoff_s,
            backoff_max_s=settings.webhook_backoff_max_s,
        )
        group = self._groups.drift_webhooks
        dead_letters = self._dead_letters(group)
        ledger = ClickHouseLedger(clickhouse)
        self.webhooks = WebhookSender(
            settings.webhooks,
            self._http,
            ledger,
            dead_letters,
            policy,
            dt.timedelta(seconds=settings.webhook_max_age_s),
        )
        # A batch may take every attempt of every event (webhooks are served side by side):
        # the group must not take the partitions away meanwhile.
        batch = 10
        per_event_s = (
            policy.max_attempts * policy.timeout_s
            + (policy.max_attempts - 1) * policy.backoff_max_s
        )
        self._webhook_consumer = self._batch_consumer(
            group,
            {
                self._names.drift_alerts: decode_drift_alert,
                self._names.model_events: decode_model_event,
            },
            self.webhooks.handle,
            ledger.probe,
            batch,
            dead_letters=dead_letters,
            max_poll_interval_ms=int((batch * per_event_s + 60) * 1000),
        )

    def _dead_letters(self, group: str) -> DeadLetters:
        """A consumer's dead letters, which name its group without the topic prefix."""
        label = group.removeprefix(self._kafka.topic_prefix)
        return DeadLetters(self._producer, self._names.dead_letter, label)

    def _batch_consumer(
        self,
        group: str,
        decoders: Mapping[str, Decoder],
        handler: BatchHandler,
        probe: Probe,
        max_batch: int,
        dead_letters: DeadLetters | None = None,
        **options: Any,
    ) -> BatchConsumer:
        """A consumer group of this service: commits after the handler, dead letters for
        what does not decode or never stores, retries while ClickHouse (`probe`) is away."""
        return BatchConsumer(
            self._kafka,
            self._bootstrap_servers,
            group_id=group,
            decoders=decoders,
            handler=handler,
            dead_letters=dead_letters or self._dead_letters(group),
            max_batch=max_batch,
            probe=probe,
            **options,
        )

    @property
    def port(self) -> int:
        return self._server.port

    async def start(self) -> int:
        restored = self.alerts.restore(await self.store.open_alerts())
        if restored:
            log.info("took up %d alert(s) an earlier run left open", restored)
        await self._producer.start()
        await self.consumer.start()
        await self.model_events.start()
        self._tasks = [
            asyncio.create_task(self.consumer.run(), name="drift sink"),
            asyncio.create_task(self.model_events.run(), name="drift model events"),
            asyncio.create_task(
                self.evaluator.run(self._settings.evaluate_every_s, self.evaluates),
                name="drift evaluation",
            ),
            asyncio.create_task(
                self.detection.release_quiet_every(self._settings.online_reorder_idle_s / 2),
                name="drift online release",
            ),
        ]
        if self._webhook_consumer is not None:
            await self._http.start()
            await self._webhook_consumer.start()
            self._tasks.append(
                asyncio.create_task(self._webhook_consumer.run(), name="drift webhooks")
            )
            log.info(
                "alerts to webhooks on",
                extra={"webhooks": [w.name for w in self._settings.webhooks]},
            )
        port = await self._server.start()
        await self._server.set_ready()
        return port

    async def stop(self, grace: float | None = None) -> None:
        await self._server.stop(grace)
        for task in self._tasks:
            if task.get_name() in ("drift evaluation", "drift online release"):
                task.cancel()
        # The sink finishes the batch in hand (ClickHouse, then the offset commit), and so
        # does the model events' store.
        await self.consumer.stop()
        await self.model_events.stop()
        if self._webhook_consumer is not None and self.webhooks is not None:
            # An attempt in flight ends (within its deadline) and is recorded; a wait before
            # the next one does not: that batch is left uncommitted, read again next start.
            await self._webhook_consumer.stop()
            self.webhooks.stop()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._http.close()
        await self._producer.stop()
        await self._registry_channel.close()

    def evaluates(self) -> bool:
        """Whether this replica runs the periodic evaluation: the one the sink's consumer
        group gave partition 0 of predictions (one replica at a time, no extra election)."""
        return self.consumer.owns(self._names.predictions, 0)

    async def _publish_alert(self, alert: events_pb2.DriftAlert) -> None:
        metrics.ALERTS.labels(
            alert.model,
            KIND_NAMES.get(alert.kind, "unspecified"),
            SEVERITY_NAMES.get(alert.severity, "unspecified"),
            STATE_NAMES.get(alert.state, "open"),
        ).inc()
        await self.store.write_alert(alert)
        await self._producer.publish(self._names.drift_alerts, alert.model, alert)

    async def _record_alarm(self, model: str, version: str, alarm: OnlineAlarm) -> None:
        metrics.ONLINE_ALARMS.labels(model, alarm.kind).inc()
        await self.store.write_online(
            model, version, alarm.stream, alarm.statistic, dt.datetime.now(dt.UTC)
        )
