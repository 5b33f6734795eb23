"""Prometheus metrics of the gateway."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

REQUESTS = Counter(
    "driftloop_gateway_requests_total",
    "Predictions served, by model and variant.",
    ["model", "variant"],
)
FALLBACKS = Counter(
    "driftloop_gateway_fallbacks_total",
    "Requests a non-stable version failed and stable answered.",
    ["model", "variant"],
)
# Why a record was dropped: "full" (the buffer was full, Kafka is slow or down) or "failed"
# (the send failed, or the record was still queued when the gateway stopped).
DROP_REASONS = ("full", "failed")
LOG_DROPPED = Counter(
    "driftloop_gateway_log_dropped_records_total",
    "Prediction log records dropped, by reason: those predictions are missing from the log "
    "(and from drift detection and canary analysis).",
    ["reason"],
)
SHADOW_DROPPED = Counter(
    "driftloop_gateway_shadow_dropped_records_total",
    "Shadow mirror records dropped, by reason.",
    ["reason"],
)
for _reason in DROP_REASONS:  # from 0, so the first drops show in increase() too
    LOG_DROPPED.labels(_reason)
    SHADOW_DROPPED.labels(_reason)
ROLLOUT_STEP = Gauge(
    "driftloop_gateway_rollout_step",
    "Current canary step (0 the first; -1 when none), by model, on the controller replica.",
    ["model"],
)
ROLLOUTS = Counter(
    "driftloop_gateway_rollouts_total",
    "Rollout outcomes (promoted, rolled_back), by model.",
    ["model", "outcome"],
)
IS_CONTROLLER = Gauge("driftloop_gateway_is_controller", "1 on the replica that advances rollouts.")
POLICIES_SKIPPED = Counter(
    "driftloop_gateway_policies_skipped_total",
    "Routing policies read from the topic and not applied (unreadable, invalid, or naming a "
    "version the registry lacks), by model.",
    ["model"],
)
