"""Webhook bodies for a notice: driftloop's own versioned JSON, a Slack incoming webhook
(text + Block Kit blocks), and the body Alertmanager's webhook receiver sends (version 4).

Pure functions of the notice, so every shape is unit-tested as it goes on the wire.

- json (`"schema": "driftloop.webhook/v1"`): every field of the notice; fields may be
  added within v1, never renamed or removed (a breaking change is v2).
- slack: `text` (the fallback notifications show) and blocks: a header (plain text, at
  most 150 characters), the summary (mrkdwn, at most 3,000), up to 10 fields (at most
  2,000 each) and a context line with the event id. Text from events is escaped (`&`,
  `<`, `>`), so a feature named `<!channel>` pings nobody.
- alertmanager: one alert per notice, labels `alertname` (DriftloopDriftAlert,
  DriftloopPromoted, DriftloopRolledBack, DriftloopRetrainHalted), model, version,
  severity, source=driftloop (and drift_kind and alert_id, or run_state); `endsAt` is the
  zero time, as Alertmanager sends for an alert with no known end. The fingerprint is a
  hash of the labels that name the alert: all but severity, so every event of one drift
  alert (whose severity may rise) has the same fingerprint, `startsAt` its open; its close
  is `"status": "resolved"` with `endsAt` the close time, as Alertmanager resolves alerts.

A drift alert's update is a new message for Slack (an incoming webhook cannot edit an
earlier one): its title says "(updated)" or "(resolved)", and the context line names the
alert id and revision, so the messages of one alert are found by its id.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from driftloop.drift.config import EventKind, SeverityName
from driftloop.drift.notices import Notice, iso

Format = Literal["json", "slack", "alertmanager"]
SCHEMA = "driftloop.webhook/v1"
SLACK_HEADER_CHARS = 150
SLACK_SECTION_CHARS = 3000
SLACK_FIELD_CHARS = 2000
SLACK_MAX_FIELDS = 10
ALERT_NAMES: dict[EventKind, str] = {
    "drift_alert": "DriftloopDriftAlert",
    "promoted": "DriftloopPromoted",
    "rolled_back": "DriftloopRolledBack",
    "retrain_halted": "DriftloopRetrainHalted",
}
ZERO_TIME = "0001-01-01T00:00:00Z"
_EMOJI: dict[SeverityName, str] = {
    "critical": ":red_circle:",
    "warning": ":large_orange_circle:",
    "info": ":large_blue_circle:",
}
TOP_FEATURES = 5
_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def render(notice: Notice, shape: Format, delivery_id: str, receiver: str) -> bytes:
    """The request body, UTF-8 JSON."""
    if shape == "slack":
        body = slack(notice)
    elif shape == "alertmanager":
        body = alertmanager(notice, receiver)
    else:
        body = generic(notice, delivery_id)
    return json.dumps(body, allow_nan=False, ensure_ascii=False, separators=(",", ":")).encode()


def generic(notice: Notice, delivery_id: str) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "delivery_id": delivery_id,
        "event_id": notice.event_id,
        "kind": notice.kind,
        "time": iso(notice.time),
        "model": notice.model,
        "version": notice.version,
        "severity": notice.severity,
        "title": notice.title,
        "summary": notice.summary,
        "details": notice.details,
    }


def slack(notice: Notice) -> dict[str, Any]:
    emoji = _EMOJI[notice.severity]
    fields = [
        _field("Model", notice.model),
        _field("Version", f"v{notice.version}" if notice.version else "-"),
        _field("Severity", notice.severity),
        *(_field(name, value) for name, value in facts(notice)),
    ][:SLACK_MAX_FIELDS]
    return {
        "text": _escaped(f"{emoji} {notice.title}: {notice.summary}", SLACK_SECTION_CHARS),
        "blocks": [
            {
                "type": "header",
                "text": {"type": "plain_text", "text": _clip(notice.title, SLACK_HEADER_CHARS)},
            },
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": _escaped(f"{emoji} {notice.summary}", SLACK_SECTION_CHARS),
                },
            },
            {"type": "section", "fields": fields},
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": _escaped(
                            f"driftloop {notice.kind} · {iso(notice.time)} · event "
                            f"{notice.event_id}" + _alert_line(notice),
                            SLACK_SECTION_CHARS,
                        ),
                    }
                ],
            },
        ],
    }


def alertmanager(notice: Notice, receiver: str) -> dict[str, Any]:
    labels = {
        "alertname": ALERT_NAMES[notice.kind],
        "model": notice.model,
        "version": notice.version,
        "severity": notice.severity,
        "source": "driftloop",
    }
    starts, ends, status = iso(notice.time), ZERO_TIME, "firing"
    if notice.kind == "drift_alert":
        labels["drift_kind"] = str(notice.details.get("drift_kind", ""))
        labels["alert_id"] = str(notice.details.get("alert_id", ""))
        starts = str(notice.details.get("opened") or starts)
        if notice.details.get("state") == "closed":
            ends, status = iso(notice.time), "resolved"
    if notice.kind == "retrain_halted":
        labels["run_state"] = str(notice.details.get("run_state", ""))
    annotations = {
        "title": notice.title,
        "summary": notice.summary,
        "description": "\n".join(f"{name}: {value}" for name, value in facts(notice)),
        "event_id": notice.event_id,
    }
    group = {"alertname": labels["alertname"], "model": notice.model}
    return {
        "version": "4",
        "groupKey": "{}:{" + ", ".join(f'{k}="{v}"' for k, v in group.items()) + "}",
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": group,
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": "",
        "alerts": [
            {
                "status": status,
                "labels": labels,
                "annotations": annotations,
                "startsAt": starts,
                "endsAt": ends,
                "generatorURL": "",
                "fingerprint": fingerprint({k: v for k, v in labels.items() if k != "severity"}),
            }
        ],
    }


def facts(notice: Notice) -> list[tuple[str, str]]:
    """The kind's own facts as (name, text) pairs, for people."""
    details = notice.details
    if notice.kind == "drift_alert":
        window = details.get("window", {})
        features = details.get("features", [])
        scores = [
            f"{f['feature']} {f['test']}={_number(f['score'])}"
            + (f" (p={_number(f['p_value'])})" if f.get("p_value") else "")
            + (f" since {f['first_alarm']}" if f.get("first_alarm") else "")
            for f in features[:TOP_FEATURES]
        ]
        more = f" and {len(features) - TOP_FEATURES} more" if len(features) > TOP_FEATURES else ""
        return [
            ("Drift kind", str(details.get("drift_kind", ""))),
            ("Window", f"{window.get('start')} to {window.get('end')}, {window.get('rows')} rows"),
            ("Features", ", ".join(scores) + more or "-"),
        ]
    pairs = []
    if notice.kind == "promoted" and details.get("previous_version"):
        pairs.append(("Previous version", f"v{details['previous_version']}"))
    if notice.kind == "rolled_back" and details.get("stable_version"):
        pairs.append(("Serving", f"v{details['stable_version']}"))
    if notice.kind == "retrain_halted":
        pairs += [("Run", str(details.get("run_id", ""))), ("State", str(details["run_state"]))]
    if details.get("reason"):
        pairs.append(("Reason", str(details["reason"])))
    if details.get("actor"):
        pairs.append(("By", str(details["actor"])))
    return pairs


def _alert_line(notice: Notice) -> str:
    """For a drift alert's event: which alert, which revision."""
    if notice.kind != "drift_alert":
        return ""
    details = notice.details
    return (
        f" · alert {details.get('alert_id', '')} {details.get('state', 'open')}"
        f" (revision {details.get('revision', 0)})"
    )


def fingerprint(labels: dict[str, str]) -> str:
    """16 hex digits identifying the label set (as Alertmanager's fingerprints do)."""
    canonical = "\x00".join(f"{k}\x00{v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _field(name: str, value: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": f"*{name}*\n" + _escaped(value, SLACK_FIELD_CHARS - 40)}


def _escaped(text: str, limit: int) -> str:
    """Slack's mrkdwn escapes, cut to `limit` characters without splitting an escape."""
    pieces = [_ESCAPES.get(char, char) for char in text]
    if sum(len(piece) for piece in pieces) <= limit:
        return "".join(pieces)
    kept: list[str] = []
    used = 0
    for piece in pieces:
        if used + len(piece) > limit - 1:
            break
        kept.append(piece)
        used += len(piece)
    return "".join(kept) + "…"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _number(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
