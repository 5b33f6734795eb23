"""Prometheus metrics of the inference service."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

ROWS = Counter("driftloop_inference_rows_total", "Rows predicted, by model.", ["model"])
LOADED = Gauge("driftloop_inference_loaded_versions", "Model versions loaded and ready.")
