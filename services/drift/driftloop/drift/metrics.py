"""Prometheus metrics of the drift service."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SINK_RECORDS = Counter(
    "drift_sink_records_total", "Records written to ClickHouse by the sink, by kind.", ["kind"]
)
SINK_BATCH_SECONDS = Histogram(
    "drift_sink_batch_seconds",
    "Time to write one consumer batch to ClickHouse and run the online detectors.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
ONLINE_ALARMS = Counter(
    "drift_online_alarms_total",
    "Online detector alarms, by model and stream kind.",
    ["model", "kind"],
)
ALERTS = Counter(
    "drift_alerts_total",
    "Drift alerts raised, by model, kind and severity.",
    ["model", "kind", "severity"],
)
LABELS_PENDING = Gauge(
    "drift_labels_pending", "Predictions and labels waiting for each other in the online join."
)
REPORT_SECONDS = Histogram(
    "drift_report_seconds",
    "Time to read a window from ClickHouse and compute its drift report.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
