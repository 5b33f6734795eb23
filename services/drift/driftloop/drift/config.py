"""Settings of the drift service (prefix DRIFTLOOP_DRIFT_)."""

from __future__ import annotations

import json
import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from driftloop.kit.settings import ClickHouseSettings, GrpcServerSettings, KafkaSettings, Port
from driftloop.kit.settings_doc import ServiceDoc

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

    port: Port = DEFAULT_PORT
    registry_target: str = Field(
        default="127.0.0.1:50055",
        description="where the drift service reads versions' baselines (plaintext: no TLS "
        "setting yet)",
    )
    registry_timeout_s: Annotated[float, Field(gt=0, le=60)] = Field(
        default=5.0, description="deadline of registry calls"
    )
    sink_batch: Annotated[int, Field(ge=1, le=1_000_000)] = Field(
        default=50_000,
        description="records per ClickHouse insert (at most; a poll returns what is there; "
        "ClickHouse wants few, large inserts)",
    )
    sink_engine: Literal["aiokafka", "faust"] = Field(
        default="aiokafka",
        description="what drives the Kafka to ClickHouse sink: `aiokafka` (the BatchConsumer) "
        "or `faust` (a faust-streaming agent; same guarantees, about a fifth of the "
        "throughput)",
    )
    label_horizon_s: Annotated[float, Field(gt=0)] = Field(
        default=86_400.0,
        description="how long the online join holds a prediction for its label (or a label "
        "for its prediction); ClickHouse joins labels of any age, this bounds memory only",
    )
    label_pending_per_partition: Annotated[int, Field(ge=100)] = Field(
        default=100_000,
        description="most predictions held waiting for their label in the online join per "
        "partition of the predictions topic (as many labels waiting for their prediction); "
        "the oldest beyond are evicted and counted (driftloop_drift_label_join_evicted_total)",
    )
    evaluate_every_s: Annotated[float, Field(gt=0)] = Field(
        default=60.0,
        description="how often every active version's last-N window is evaluated, stored "
        "and alerted on",
    )
    evaluate_every_rows: Annotated[int | None, Field(ge=0)] = Field(
        default=None,
        description="the same round also starts once this many predictions were logged "
        "since the last (a burst can be over within evaluate_every_s); 0: on the clock only",
        json_schema_extra={"default_text": "unset: window_last_n (a fresh window's worth)"},
    )
    window_last_n: Annotated[int, Field(ge=100, le=10_000_000)] = Field(
        default=10_000, description="rows of that window (and of reports asked without a window)"
    )
    window_min_rows: Annotated[int, Field(ge=10)] = Field(
        default=500, description="fewer rows: no periodic evaluation"
    )
    time_window_s: Annotated[float, Field(ge=60)] = Field(
        default=3600.0,
        description="fixed time windows (aligned to the epoch): each complete one is "
        "evaluated and stored once per version",
    )
    fdr_alpha: Annotated[float, Field(gt=0, lt=1)] = Field(
        default=0.01,
        description="Benjamini-Hochberg false discovery rate across features (and the level "
        "of the prediction and concept drift tests)",
    )
    psi_threshold: Annotated[float, Field(gt=0)] = Field(
        default=0.1,
        description="a significant feature (or output) drifts when its PSI reaches this, or "
        "its effect size reaches effect_threshold (the material part of the rule)",
    )
    psi_major: Annotated[float, Field(gt=0)] = Field(
        default=0.2, description="PSI that makes the alert critical"
    )
    effect_threshold: Annotated[float, Field(gt=0, le=1)] = Field(
        default=0.08,
        description="effect size that makes a significant feature (or output) drifted even "
        "under psi_threshold: the KS distance D for numbers, the total variation distance for "
        "categories (the share of rows that moved). 0.08 is the D of a 0.2-sigma mean shift "
        "of a normal feature, whose PSI is only ~0.04",
    )
    negligible: Annotated[float, Field(ge=0, lt=1)] = Field(
        default=0.02,
        description="a change this small (KS D; for categories Cohen's w / 2, at least the "
        "total variation distance) is negligible: the tests ask whether the change is larger, "
        "so a huge window does not make a negligible difference significant",
    )
    dataset_drift_share: Annotated[float, Field(gt=0, le=1)] = Field(
        default=0.5, description="share of drifted features that is dataset drift (critical)"
    )
    concept_tolerance: Annotated[float, Field(ge=0)] = Field(
        default=0.05,
        description="accuracy drop (or relative MAE rise) below the holdout that is concept "
        "drift, when also significant (one-sided test at the FDR level)",
    )
    concept_min_labelled: Annotated[int, Field(ge=10)] = Field(
        default=200, description="labelled rows a window needs before it can show concept drift"
    )
    online_false_alarm_events: Annotated[float, Field(ge=10_000)] = Field(
        default=10_000_000.0,
        description="online detectors: expected stable events between two false alarms of a "
        "model, all its streams together (a 100,000-event stable stream then alarms with "
        "probability about 1%)",
    )
    online_reorder_window_s: Annotated[float, Field(ge=0, le=3600)] = Field(
        default=1.0,
        description="online detectors see predictions in prediction-time order: one is "
        "held until every partition of predictions has delivered one this much newer (the "
        "disorder tolerated within a partition), so the same stream gives the same alarms "
        "however the partitions were interleaved",
    )
    online_reorder_max_events: Annotated[int, Field(ge=1)] = Field(
        default=100_000,
        description="predictions held for ordering at most; past that the oldest go to the "
        "detectors (Arrow rows: about 340 bytes each with 20 numeric features)",
    )
    online_reorder_idle_s: Annotated[float, Field(gt=0)] = Field(
        default=10.0,
        description="a partition of predictions that delivered nothing for this long stops "
        "holding the others' predictions back, and once no prediction arrived for this long "
        "the held ones go to the detectors",
    )
    alert_debounce_s: Annotated[float, Field(ge=0)] = Field(
        default=300.0,
        description="an open alert closes only once its last alarm is this old (and its "
        "streams are back in control): a stream wavering at its threshold updates one alert "
        "instead of opening one after another",
    )
    alert_quiet_events: Annotated[int, Field(ge=100)] = Field(
        default=10_000,
        description="a stream an online detector alarmed on is back in control after this "
        "many events of its stream (predictions; labelled outcomes for the error stream) "
        "without another alarm",
    )
    canary_alpha: Annotated[float, Field(gt=0, lt=0.5)] = Field(
        default=0.01,
        description="canary analysis: the chance of failing a harmless candidate over a "
        "whole canary, asked at every round (half for the error rate, half for quality)",
    )
    canary_min_requests: Annotated[int, Field(ge=1)] = Field(
        default=50, description="requests each version needs before its error rate is judged"
    )
    canary_min_labelled: Annotated[int, Field(ge=2)] = Field(
        default=50, description="labelled rows each version needs before its quality is judged"
    )
    webhooks: Webhooks = Field(
        default_factory=list,
        description='alerts to webhooks, a JSON list of `{"name", "url", "format", '
        '"events", "min_severity", "headers"}` (see "Alerts to webhooks"); each event '
        "goes once to each webhook that wants it; URLs and headers are never logged",
        json_schema_extra={"default_text": "empty: off", "secret": True},
    )
    webhook_timeout_s: Annotated[float, Field(gt=0, le=120)] = Field(
        default=5.0, description="deadline of one HTTP attempt"
    )
    webhook_max_attempts: Annotated[int, Field(ge=1, le=20)] = Field(
        default=6, description="attempts per event and webhook before it goes to dead-letter"
    )
    webhook_backoff_s: Annotated[float, Field(gt=0, le=600)] = Field(
        default=1.0, description="wait after the first failed attempt, doubled each time (jittered)"
    )
    webhook_backoff_max_s: Annotated[float, Field(gt=0, le=3600)] = Field(
        default=60.0,
        description="longest wait between attempts (a `Retry-After` counts, up to this)",
    )
    webhook_max_age_s: Annotated[float, Field(gt=0)] = Field(
        default=86_400.0,
        description="events older than this are not sent (a first start does not replay the "
        "topics' history)",
    )

    @field_validator("webhooks")
    @classmethod
    def _unique_names(cls, value: list[Webhook]) -> list[Webhook]:
        names = [webhook.name for webhook in value]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"webhook names must be unique: {', '.join(repeated)} repeated")
        return value


# What `python -m driftloop.drift --help` and `driftloop settings` list for this service.
SETTINGS_DOC = ServiceDoc(
    "drift",
    "Drift service",
    DriftSettings,
    reads=(KafkaSettings, ClickHouseSettings),
)
