"""Settings of the drift service (prefix DRIFTLOOP_DRIFT_)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from driftloop.kit.settings import GrpcServerSettings

DEFAULT_PORT = 50053


class DriftSettings(GrpcServerSettings):
    model_config = SettingsConfigDict(
        env_prefix="DRIFTLOOP_DRIFT_", extra="ignore", populate_by_name=True
    )

    port: int = DEFAULT_PORT
    registry_target: str = "127.0.0.1:50055"
    registry_timeout_s: Annotated[float, Field(gt=0, le=60)] = 5.0
    # The sink: records per ClickHouse insert (ClickHouse wants few, large inserts), and
    # what drives it: the project's aiokafka BatchConsumer, or a faust-streaming agent
    # (same guarantees, about a quarter of the throughput).
    sink_batch: Annotated[int, Field(ge=1, le=1_000_000)] = 50_000
    sink_engine: Literal["aiokafka", "faust"] = "aiokafka"
    # How long a prediction waits for its label (and a label for its prediction) in the
    # online error stream. ClickHouse joins labels of any age; this bounds memory only.
    label_horizon_s: Annotated[float, Field(gt=0)] = 86_400.0
    label_pending_max: Annotated[int, Field(ge=1_000)] = 1_000_000
    # Windowed reports: how often every active version is evaluated, and over how many rows.
    evaluate_every_s: Annotated[float, Field(gt=0)] = 60.0
    window_last_n: Annotated[int, Field(ge=100, le=10_000_000)] = 10_000
    window_min_rows: Annotated[int, Field(ge=10)] = 500
    # Fixed time windows, aligned to the epoch: each complete one is evaluated and stored once.
    time_window_s: Annotated[float, Field(ge=60)] = 3600.0
    # Tests: Benjamini-Hochberg false discovery rate across features; a feature drifts when
    # its test is significant after that control AND its PSI reaches psi_threshold (with
    # enough rows every tiny difference is significant; PSI says whether it matters).
    fdr_alpha: Annotated[float, Field(gt=0, lt=1)] = 0.01
    psi_threshold: Annotated[float, Field(gt=0)] = 0.1
    psi_major: Annotated[float, Field(gt=0)] = 0.2
    # Dataset drift: this share of features drifting (a critical alert).
    dataset_drift_share: Annotated[float, Field(gt=0, le=1)] = 0.5
    # Concept drift: the labelled window's accuracy (or MAE) worse than the holdout's by
    # more than this, significantly (one-sided test at fdr_alpha).
    concept_tolerance: Annotated[float, Field(ge=0)] = 0.05
    concept_min_labelled: Annotated[int, Field(ge=10)] = 200
    # Online detectors: expected stable events between two false alarms of one model, all
    # its streams together (a 100,000-event stable stream then alarms with probability
    # about 1%). Each stream gets (streams x this) events per false alarm,
    # far inside the budget of 1 per 10,000 stable events per stream (the minimum here).
    online_false_alarm_events: Annotated[float, Field(ge=10_000)] = 10_000_000.0
    # At most one alert per (model, version, kind) in this many seconds.
    alert_debounce_s: Annotated[float, Field(ge=0)] = 300.0
    # Canary analysis (AnalyzeCanary): the false-FAIL budget of its always-valid sequential
    # tests over a whole canary, and the traffic each version needs before it is judged.
    canary_alpha: Annotated[float, Field(gt=0, lt=0.5)] = 0.01
    canary_min_requests: Annotated[int, Field(ge=1)] = 50
    canary_min_labelled: Annotated[int, Field(ge=2)] = 50
