"""Prometheus metrics of the drift service."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SINK_RECORDS = Counter(
    "driftloop_drift_sink_records_total",
    "Records written to ClickHouse by the sink, by kind.",
    ["kind"],
)
SINK_BATCH_SECONDS = Histogram(
    "driftloop_drift_sink_batch_seconds",
    "Time to write one consumer batch to ClickHouse and run the online detectors.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
ONLINE_ALARMS = Counter(
    "driftloop_drift_online_alarms_total",
    "Online detector alarms, by model and stream kind.",
    ["model", "kind"],
)
ALERTS = Counter(
    "driftloop_drift_alerts_total",
    "Drift alert events, by model, kind, severity and state (open, updated, closed: an "
    "alert opens once, is updated when a stream joins it or its severity rises, closes once).",
    ["model", "kind", "severity", "state"],
)
LABELS_PENDING = Gauge(
    "driftloop_drift_labels_pending",
    "Predictions and labels waiting for each other in the online join.",
)
LABEL_JOIN_EVICTED = Counter(
    "driftloop_drift_label_join_evicted_total",
    "Predictions and labels dropped from the online join without meeting their other half, "
    "by reason: capacity (the partition's bound was reached: the oldest went) or horizon "
    "(waited longer than the label horizon).",
    ["reason"],
)
REPORT_SECONDS = Histogram(
    "driftloop_drift_report_seconds",
    "Time to read a window from ClickHouse and compute its drift report.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
WEBHOOK_DELIVERIES = Counter(
    "driftloop_drift_webhook_deliveries_total",
    "Events handed to a webhook, by how it ended: delivered (a 2xx answer), dead_lettered "
    "(never delivered: the record went to dead-letter), duplicate (the delivery ledger had "
    "it: not sent again), stale (older than the maximum age: not sent).",
    ["webhook", "outcome"],
)
WEBHOOK_ATTEMPTS = Counter(
    "driftloop_drift_webhook_attempts_total",
    "HTTP requests to webhooks, by answer: 2xx, 3xx, 4xx, 5xx, timeout, error (no answer).",
    ["webhook", "result"],
)
WEBHOOK_ATTEMPT_SECONDS = Histogram(
    "driftloop_drift_webhook_attempt_seconds",
    "Time of one HTTP request to a webhook, answered or not.",
    ["webhook"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
