"""Topic names, their specs (partitions, compaction) and idempotent creation.

predictions and labels always get the same partition count: both are keyed by request_id,
so a partition's labels meet their predictions in one consumer (co-partitioning).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    NodeNotReadyError,
    RequestTimedOutError,
)

from driftloop.kafka.clients import make_admin, make_consumer
from driftloop.kit.errors import FailedPrecondition
from driftloop.kit.settings import ConfigError, KafkaSettings, load_settings
from driftloop.kit.startup import Dependency, wait_for

log = logging.getLogger(__name__)

TOPIC_ALREADY_EXISTS = 36


@dataclass(frozen=True)
class TopicNames:
    """The seven topics of design.md section 2, with the configured prefix."""

    prefix: str = "driftloop."

    @property
    def predictions(self) -> str:
        return f"{self.prefix}predictions"

    @property
    def labels(self) -> str:
        return f"{self.prefix}labels"

    @property
    def shadow_requests(self) -> str:
        return f"{self.prefix}shadow-requests"

    @property
    def routing(self) -> str:
        return f"{self.prefix}routing"

    @property
    def model_events(self) -> str:
        return f"{self.prefix}model-events"

    @property
    def drift_alerts(self) -> str:
        return f"{self.prefix}drift-alerts"

    @property
    def dead_letter(self) -> str:
        return f"{self.prefix}dead-letter"


@dataclass(frozen=True)
class GroupNames:
    """The consumer groups that share a service's work between its replicas, with the
    configured prefix, and the topics each consumes (their lag is the backlog)."""

    prefix: str = "driftloop."

    @property
    def drift_sink(self) -> str:
        return f"{self.prefix}drift-sink"

    @property
    def drift_model_events(self) -> str:
        """The drift service's store of every model event (table model_events)."""
        return f"{self.prefix}drift-model-events"

    @property
    def drift_webhooks(self) -> str:
        return f"{self.prefix}drift-webhooks"

    @property
    def retrainer(self) -> str:
        return f"{self.prefix}retrainer"

    @property
    def shadow(self) -> str:
        return f"{self.prefix}shadow"

    @property
    def gateway_controller(self) -> str:
        return f"{self.prefix}gateway-controller"

    def backlogs(self) -> dict[str, tuple[str, ...]]:
        """Each work-sharing group and the topics it consumes (the webhook group is left
        out: it exists only where webhooks are configured)."""
        topics = TopicNames(self.prefix)
        return {
            self.drift_sink: (topics.predictions, topics.labels),
            self.drift_model_events: (topics.model_events,),
            self.retrainer: (topics.drift_alerts,),
            self.shadow: (topics.shadow_requests,),
        }


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


def topic_specs(settings: KafkaSettings) -> list[TopicSpec]:
    names = TopicNames(settings.topic_prefix)
    data = settings.partitions
    return [
        TopicSpec(names.predictions, data),
        TopicSpec(names.labels, data),
        TopicSpec(names.shadow_requests, data),
        # The current policy per model: compacted, so a new replica replays only the latest.
        TopicSpec(names.routing, 1, {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"}),
        TopicSpec(names.model_events, 1),
        TopicSpec(names.drift_alerts, 1),
        TopicSpec(names.dead_letter, 1, {"retention.ms": str(30 * 24 * 3600 * 1000)}),
    ]


async def ensure_topics(settings: KafkaSettings, bootstrap_servers: str) -> list[str]:
    """Create the missing topics; check co-partitioning. Return the names created."""
    specs = topic_specs(settings)
    admin = make_admin(settings, bootstrap_servers)
    try:
        await admin.start()
        response = await admin.create_topics(
            [
                NewTopic(
                    spec.name,
                    num_partitions=spec.partitions,
                    replication_factor=settings.replication_factor,
                    topic_configs=spec.config,
                )
                for spec in specs
            ]
        )
        created = []
        for topic, code, *message in response.topic_errors:
            if code == 0:
                created.append(topic)
            elif code != TOPIC_ALREADY_EXISTS:
                raise FailedPrecondition(f"cannot create topic {topic}: error {code} {message}")
        names = TopicNames(settings.topic_prefix)
        counts = await partition_counts(admin, [names.predictions, names.labels])
        if counts[names.predictions] != counts[names.labels]:
            raise FailedPrecondition(
                f"{names.predictions} has {counts[names.predictions]} partitions but "
                f"{names.labels} has {counts[names.labels]}: they must be equal, because "
                "labels are joined to predictions within a partition"
            )
        if created:
            log.info("created topics", extra={"topics": created})
        return created
    finally:
        await admin.close()


# What an unreachable or still starting broker raises: wait and try again.
BROKER_NOT_UP: tuple[type[BaseException], ...] = (
    KafkaConnectionError,
    NodeNotReadyError,
    KafkaTimeoutError,
    RequestTimedOutError,
    OSError,
    TimeoutError,
)


def broker(bootstrap_servers: str) -> Dependency:
    return Dependency("the Kafka broker", bootstrap_servers, "DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS")


async def service_kafka() -> tuple[KafkaSettings, str]:
    """The Kafka settings of a service running on its own (`python -m driftloop.<service>`):
    a bootstrap address is required; the broker is waited for (start-up order does not
    matter), and the topics exist once this returns."""
    kafka = load_settings(KafkaSettings)
    bootstrap = kafka.bootstrap_servers
    if bootstrap is None:
        raise ConfigError(
            "DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS: required when a service runs on its own"
        )
    await wait_for(
        broker(bootstrap), lambda: ensure_topics(kafka, bootstrap), retry_on=BROKER_NOT_UP
    )
    return kafka, bootstrap


async def wait_for_broker(settings: KafkaSettings, bootstrap_servers: str) -> None:
    """Wait until the broker answers (for a service that creates no topics)."""

    async def answers() -> None:
        admin = make_admin(settings, bootstrap_servers)
        try:
            await admin.start()
        finally:
            await admin.close()

    await wait_for(broker(bootstrap_servers), answers, retry_on=BROKER_NOT_UP)


async def group_lag(
    settings: KafkaSettings, bootstrap_servers: str, group: str, topics: tuple[str, ...]
) -> dict[str, int | None]:
    """Per topic, the records the group has yet to commit (None: it committed nothing on
    that topic yet)."""
    admin = make_admin(settings, bootstrap_servers)
    consumer = make_consumer(settings, bootstrap_servers)
    try:
        await admin.start()
        await consumer.start()
        committed = await admin.list_consumer_group_offsets(group)
        counts = await partition_counts(admin, list(topics))
        partitions = [TopicPartition(t, p) for t, count in counts.items() for p in range(count)]
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
        await admin.close()
    lag: dict[str, int | None] = dict.fromkeys(topics)
    for partition, end in ends.items():
        offset = committed.get(partition)
        if offset is not None and offset.offset >= 0:
            lag[partition.topic] = (lag[partition.topic] or 0) + max(end - offset.offset, 0)
    return lag


async def partition_counts(admin: AIOKafkaAdminClient, topics: list[str]) -> dict[str, int]:
    described = await admin.describe_topics(topics)
    return {item["topic"]: len(item["partitions"]) for item in described}
