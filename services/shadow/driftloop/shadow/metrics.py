"""Prometheus metrics of the shadow service."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

ANSWERS = Counter(
    "driftloop_shadow_answers_total",
    "Shadow calls, by model, shadow version and status (OK or the failure's status name).",
    ["model", "version", "status"],
)
SKIPPED = Counter(
    "driftloop_shadow_skipped_total",
    "Shadow calls not made because the service was behind (sampled out), by model.",
    ["model"],
)
LAG_SECONDS = Gauge(
    "driftloop_shadow_lag_seconds", "Age of the oldest mirrored request in the last batch."
)
AGREEMENT = Gauge(
    "driftloop_shadow_agreement",
    "Share of compared requests where the shadow gave the live label (last comparison).",
    ["model", "version"],
)
