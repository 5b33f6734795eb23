"""Events people are told about, as one domain type, converted from the Kafka events.

A `Notice` is what a webhook receives, whatever the source: an event of a drift alert
(topic drift-alerts: its open, an update, its close) or a promotion, a rollback or a
retraining run that ended without a new version (topic model-events). Its `event_id` is
the natural key of the delivery ledger: for an alert's open the alert id, for its later
events the alert id and the revision (`<alert id>-<revision>`), so an update is a new
delivery of the same alert (its `alert_id` in the details); for a model event (which has
no id) the SHA-256 of its deterministic encoding, so a re-delivered record, or the same
event published twice, has the same id.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from driftloop.drift.alerts import KIND_NAMES, STATE_NAMES
from driftloop.drift.config import EventKind, SeverityName
from driftloop.kit.times import timestamp_problem
from driftloop.v1 import events_pb2

SEVERITY_RANK: dict[SeverityName, int] = {"info": 0, "warning": 1, "critical": 2}
# How a retraining run's end state weighs: a crash needs a person, a refused challenger
# is the gate doing its job.
RUN_STATE_SEVERITY: dict[str, SeverityName] = {
    "failed": "critical",
    "rejected_data": "warning",
    "rejected_challenger": "info",
}
_ALERT_SEVERITY: dict[events_pb2.Severity.ValueType, SeverityName] = {
    events_pb2.SEVERITY_INFO: "info",
    events_pb2.SEVERITY_WARNING: "warning",
    events_pb2.SEVERITY_CRITICAL: "critical",
}
_MODEL_EVENT_KINDS: dict[events_pb2.ModelEventKind.ValueType, EventKind] = {
    events_pb2.MODEL_EVENT_KIND_PROMOTED: "promoted",
    events_pb2.MODEL_EVENT_KIND_ROLLED_BACK: "rolled_back",
    events_pb2.MODEL_EVENT_KIND_RETRAIN_HALTED: "retrain_halted",
}


@dataclass(frozen=True)
class Notice:
    event_id: str
    kind: EventKind
    model: str
    version: str
    severity: SeverityName
    # One line a person reads first.
    summary: str
    time: dt.datetime
    # What only this kind has (JSON-ready: str, numbers, None, lists and dicts of them).
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def title(self) -> str:
        """A short heading: what happened to which model (and, for an alert's later events,
        that it is an update or a resolution)."""
        phase = {"updated": " (updated)", "closed": " (resolved)"}.get(
            str(self.details.get("state", "")), ""
        )
        heads: dict[EventKind, str] = {
            "drift_alert": f"{self.details.get('drift_kind', '').capitalize()} drift{phase}",
            "promoted": "Promoted",
            "rolled_back": "Rolled back",
            "retrain_halted": "Retraining halted",
        }
        return f"{heads[self.kind]}: {self.model} v{self.version}"

    def wanted(self, kinds: frozenset[EventKind], min_severity: SeverityName) -> bool:
        return self.kind in kinds and SEVERITY_RANK[self.severity] >= SEVERITY_RANK[min_severity]


def from_alert(alert: events_pb2.DriftAlert, published: dt.datetime) -> Notice:
    """`published`: when the record was written, the time of an alert that has none."""
    kind = KIND_NAMES.get(alert.kind, "unspecified")
    return Notice(
        event_id=alert_event_id(alert),
        kind="drift_alert",
        model=alert.model,
        version=alert.version,
        severity=_ALERT_SEVERITY.get(alert.severity, "warning"),
        summary=alert.summary,
        time=event_time(alert, published),
        details={
            "alert_id": alert.alert_id,
            "state": STATE_NAMES.get(alert.state, "open"),
            "revision": alert.revision,
            "opened": iso(alert.opened.ToDatetime(dt.UTC)) if alert.HasField("opened") else None,
            "previous_severity": _ALERT_SEVERITY.get(alert.previous_severity),
            "drift_kind": kind,
            "window": {
                "start": iso(alert.window.start.ToDatetime(dt.UTC)),
                "end": iso(alert.window.end.ToDatetime(dt.UTC)),
                "rows": alert.window_rows,
            },
            "features": [
                {
                    "feature": score.feature,
                    "test": score.test,
                    "score": finite(score.score),
                    "p_value": finite(score.p_value),
                    "drifted": score.drifted,
                    "first_alarm": _time_of(score, "first_alarm"),
                    "last_alarm": _time_of(score, "last_alarm"),
                }
                for score in alert.features
            ],
        },
    )


def alert_event_id(alert: events_pb2.DriftAlert) -> str:
    """The id of one event of an alert: the alert id for its open (as before alerts had a
    life), `<alert id>-<revision>` for a later one."""
    return alert.alert_id if alert.revision == 0 else f"{alert.alert_id}-{alert.revision}"


def _time_of(
    score: events_pb2.FeatureScore, name: Literal["first_alarm", "last_alarm"]
) -> str | None:
    return iso(getattr(score, name).ToDatetime(dt.UTC)) if score.HasField(name) else None


def from_model_event(event: events_pb2.ModelEvent, published: dt.datetime) -> Notice | None:
    """The notice of a promotion, a rollback or a halted run; None for other kinds."""
    kind = _MODEL_EVENT_KINDS.get(event.kind)
    if kind is None:
        return None
    event_id = model_event_id(event)
    common = {"reason": event.reason, "actor": event.actor}
    if kind == "promoted":
        previous = f" (replacing v{event.previous_version})" if event.previous_version else ""
        summary = f"{event.model} v{event.version} is the new champion{previous}"
        severity: SeverityName = "info"
        details = {"previous_version": event.previous_version, **common}
    elif kind == "rolled_back":
        summary = f"the rollout of {event.model} v{event.version} was rolled back"
        summary += f": {event.reason}" if event.reason else ""
        severity = "warning"
        details = {"stable_version": event.previous_version, **common}
    else:
        summary = f"retraining run {event.run_id} of {event.model} ended {event.run_state}"
        summary += f": {event.reason}" if event.reason else ""
        severity = RUN_STATE_SEVERITY.get(event.run_state, "warning")
        details = {"run_id": event.run_id, "run_state": event.run_state, **common}
    return Notice(
        event_id=event_id,
        kind=kind,
        model=event.model,
        version=event.version,
        severity=severity,
        summary=summary,
        time=event_time(event, published),
        details=details,
    )


def model_event_id(event: events_pb2.ModelEvent) -> str:
    """A model event's id: the SHA-256 of its deterministic encoding (32 hex digits)."""
    return hashlib.sha256(event.SerializeToString(deterministic=True)).hexdigest()[:32]


def event_time(
    event: events_pb2.DriftAlert | events_pb2.ModelEvent, published: dt.datetime
) -> dt.datetime:
    """The event's time, or when it was published if it has none or one that cannot be
    stored (outside ClickHouse's DateTime64 range: the row would be refused for ever)."""
    if not event.HasField("time"):
        return published
    if timestamp_problem(event.time.seconds, event.time.nanos) is not None:
        return published
    return event.time.ToDatetime(dt.UTC)


def iso(moment: dt.datetime) -> str:
    """RFC 3339 in UTC with microseconds and a Z."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def finite(value: float) -> float | None:
    """JSON has no NaN or infinity: those become null."""
    return value if math.isfinite(value) else None
