"""Prometheus metrics of the gateway."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

REQUESTS = Counter(
    "gateway_requests_total", "Predictions served, by model and variant.", ["model", "variant"]
)
FALLBACKS = Counter(
    "gateway_fallbacks_total",
    "Requests a non-stable version failed and stable answered.",
    ["model", "variant"],
)
LOG_DROPPED = Gauge(
    "gateway_log_dropped_records", "Prediction log records dropped (buffer full or Kafka failed)."
)
SHADOW_DROPPED = Gauge("gateway_shadow_dropped_records", "Shadow mirror records dropped.")
ROLLOUT_STEP = Gauge(
    "gateway_rollout_step", "Current canary step (-1 when none), by model.", ["model"]
)
ROLLOUTS = Counter(
    "gateway_rollouts_total", "Rollout outcomes, by model and outcome.", ["model", "outcome"]
)
IS_CONTROLLER = Gauge("gateway_is_controller", "1 on the replica that advances rollouts.")
POLICIES_SKIPPED = Counter(
    "gateway_policies_skipped_total",
    "Routing policies read from the topic and not applied (unreadable, invalid, or naming a "
    "version the registry lacks), by model.",
    ["model"],
)
