"""Prometheus metrics of the Kafka consumers, defined once for every service."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

DEAD_LETTERS = Counter(
    "driftloop_dead_letters_total",
    "Records sent to dead-letter, by source topic, consumer group and stage "
    "(decode: invalid; store: refused by the store after isolation; deliver: a webhook "
    "never took it).",
    ["topic", "group", "stage"],
)
BATCH_RETRIES = Counter(
    "driftloop_consumer_batch_retries_total",
    "Batches whose handler failed for a reason that passes (the store unavailable) and "
    "were retried, by consumer group.",
    ["group"],
)
EVENTS_SKIPPED = Counter(
    "driftloop_events_skipped_total",
    "Events of a broadcast topic (model-events, routing) skipped by a follower, by topic "
    "and why (undecodable, handler failed).",
    ["topic", "why"],
)
CONSUMER_LAG = Gauge(
    "driftloop_consumer_lag_records",
    "Records of a partition its consumer group has not handled yet: the partition's high "
    "watermark minus the group's position, by group, topic and partition, on the replica "
    "that owns the partition (updated as batches are consumed).",
    ["group", "topic", "partition"],
)
