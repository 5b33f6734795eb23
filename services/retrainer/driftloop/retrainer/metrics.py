"""Prometheus metrics of the retrainer."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

DECISIONS = Counter(
    "driftloop_retrainer_decisions_total",
    "Retraining triggers considered, by model, trigger and outcome (run or skipped).",
    ["model", "trigger", "outcome"],
)
RUNS = Counter(
    "driftloop_retrainer_runs_total",
    "Retraining runs ended, by model and final state.",
    ["model", "state"],
)
RUNS_RUNNING = Gauge(
    "driftloop_retrainer_run_in_progress", "1 while a retraining run of the model runs.", ["model"]
)
ROLLOUT_OUTCOMES = Counter(
    "driftloop_retrainer_rollouts_total",
    "Rollouts of retrained versions that ended, by model and outcome.",
    ["model", "outcome"],
)
