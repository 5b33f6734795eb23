"""Settings of the drift service (prefix DRIFTLOOP_DRIFT_)."""

from __future__ import annotations

import json
import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from driftloop.kit.settings import GrpcServerSettings

DEFAULT_PORT = 50053
# What a webhook can be sent: drift alerts (topic drift-alerts) and, from model-events,
# promotions, rollbacks and retraining runs that ended without a new version.
EventKind = Literal["drift_alert", "promoted", "rolled_back", "retrain_halted"]
EVENT_KINDS: tuple[EventKind, ...] = ("drift_alert", "promoted", "rolled_back", "retrain_halted")
SeverityName = Literal["info", "warning", "critical"]


class Webhook(BaseModel):
    """One receiver of alerts (an element of DRIFTLOOP_DRIFT_WEBHOOKS, a JSON list). The URL
    and the headers may hold credentials (a Slack URL does): logs and errors name the webhook,
    never them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")]
    url: str
    # json: driftloop's own versioned body; slack: an incoming webhook (text + blocks);
    # alertmanager: the body Alertmanager's webhook receiver sends (version "4").
    format: Literal["json", "slack", "alertmanager"] = "json"
    events: frozenset[EventKind] = frozenset(EVENT_KINDS)
    # Events below this severity are not sent to this webhook.
    min_severity: SeverityName = "info"
    # Sent with every request (an Authorization header, for example).
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        return value

    @field_validator("headers")
    @classmethod
    def _header_lines(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
                raise ValueError("a header name must be an HTTP token")
            if "\r" in text or "\n" in text:
                raise ValueError(f"the value of header {name} has a line break")
        return value

    @field_validator("events")
    @classmethod
    def _some_events(cls, value: frozenset[EventKind]) -> frozenset[EventKind]:
        if not value:
            raise ValueError(f"name at least one of {', '.join(EVENT_KINDS)}")
        return value


def _json_list(value: object) -> object:
    """The environment gives a JSON text; say plainly when it is not JSON."""
    if isinstance(value, str):
        if not value.strip():
            return []
        try:
            return json.loads(value)
        except json.JSONDecodeError as error:
            raise ValueError(f"not a JSON list of webhooks: {error}") from None
    return value


Webhooks = Annotated[list[Webhook], NoDecode, BeforeValidator(_json_list)]


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
    # Alerts to webhooks: off while the list is empty. Each event goes to each webhook that
    # wants it once: tried up to max_attempts times, each within timeout_s, waiting
    # backoff_s, doubled each time up to backoff_max_s (Retry-After is honoured up to that);
    # then it goes to dead-letter. Events older than max_age_s are not sent (a first start
    # does not replay the topics' history).
    webhooks: Webhooks = Field(default_factory=list)
    webhook_timeout_s: Annotated[float, Field(gt=0, le=120)] = 5.0
    webhook_max_attempts: Annotated[int, Field(ge=1, le=20)] = 6
    webhook_backoff_s: Annotated[float, Field(gt=0, le=600)] = 1.0
    webhook_backoff_max_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    webhook_max_age_s: Annotated[float, Field(gt=0)] = 86_400.0

    @field_validator("webhooks")
    @classmethod
    def _unique_names(cls, value: list[Webhook]) -> list[Webhook]:
        names = [webhook.name for webhook in value]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"webhook names must be unique: {', '.join(repeated)} repeated")
        return value
