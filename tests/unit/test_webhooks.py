"""Alerts to webhooks without I/O: the payload shapes as they go on the wire, notices from
the Kafka events, the retry policy, and the sender's core against in-memory ports."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from driftloop.drift.config import DriftSettings, Webhook
from driftloop.drift.deliveries import retry_after
from driftloop.drift.model_events import stored, to_proto
from driftloop.drift.notices import Notice, from_alert, from_model_event
from driftloop.drift.payloads import SCHEMA, fingerprint, render
from driftloop.drift.webhooks import (
    Answer,
    Delivery,
    RetryPolicy,
    Stopping,
    WebhookSender,
    delivery_id,
)
from driftloop.kafka.consumer import Record
from driftloop.kafka.dead_letter import RawRecord, Stage
from driftloop.kit.settings import ConfigError, load_settings
from driftloop.kit.times import stamp
from driftloop.v1 import common_pb2, events_pb2

NOW = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)
SECRET_URL = "https://hooks.example.com/services/T0/B0/s3cr3t"


def drift_alert(alert_id: str = "a1", summary: str = "2 of 3 features drifted") -> Any:
    alert = events_pb2.DriftAlert(
        alert_id=alert_id,
        kind=events_pb2.DRIFT_KIND_DATA,
        model="churn",
        version="2",
        severity=events_pb2.SEVERITY_CRITICAL,
        summary=summary,
        window=common_pb2.TimeWindow(
            start=stamp(NOW - dt.timedelta(hours=1)), end=stamp(NOW - dt.timedelta(minutes=1))
        ),
        window_rows=10_000,
        time=stamp(NOW - dt.timedelta(minutes=1)),
    )
    alert.features.extend(
        [
            events_pb2.FeatureScore(
                feature="tenure", test="psi", score=0.41, p_value=1e-9, drifted=True
            ),
            events_pb2.FeatureScore(
                feature="charges", test="cusum", score=math.inf, p_value=math.nan, drifted=True
            ),
        ]
    )
    return alert


def model_event(kind: int, **fields: Any) -> events_pb2.ModelEvent:
    event = events_pb2.ModelEvent(
        kind=kind,  # type: ignore[arg-type]  # an enum value passed as int
        model="churn",
        version="3",
        actor="controller",
        time=stamp(NOW - dt.timedelta(seconds=5)),
    )
    for name, value in fields.items():
        setattr(event, name, value)
    return event


def record(value: Any, offset: int = 0) -> Record:
    topic = "t.drift-alerts" if isinstance(value, events_pb2.DriftAlert) else "t.model-events"
    return Record(
        topic,
        0,
        offset,
        b"churn",
        int(NOW.timestamp() * 1000),
        value,
        value.SerializeToString(),
    )


# notices


def test_a_drift_alert_becomes_a_notice_with_its_id_and_json_safe_scores() -> None:
    notice = from_alert(drift_alert(), NOW)
    assert (notice.event_id, notice.kind, notice.model, notice.version) == (
        "a1",
        "drift_alert",
        "churn",
        "2",
    )
    assert notice.severity == "critical" and notice.title == "Data drift: churn v2"
    features = notice.details["features"]
    assert features[0] == {
        "feature": "tenure",
        "test": "psi",
        "score": 0.41,
        "p_value": 1e-9,
        "drifted": True,
        "first_alarm": None,
        "last_alarm": None,
    }
    assert features[1]["score"] is None and features[1]["p_value"] is None
    assert notice.details["window"]["rows"] == 10_000
    # An alert from before the lifecycle (no state, revision 0) reads as an open.
    assert (notice.details["state"], notice.details["revision"]) == ("open", 0)


def alert_event(state: int, revision: int, severity: int) -> Any:
    """Event `revision` of alert a1: opened 10 minutes ago, this event a minute ago."""
    alert = drift_alert()
    alert.state = state
    alert.revision = revision
    alert.opened.CopyFrom(stamp(NOW - dt.timedelta(minutes=10)))
    alert.previous_severity = events_pb2.SEVERITY_WARNING if revision else 0
    alert.severity = severity
    alert.features[0].first_alarm.CopyFrom(stamp(NOW - dt.timedelta(minutes=10)))
    alert.features[1].first_alarm.CopyFrom(stamp(NOW - dt.timedelta(minutes=3)))
    return alert


def test_each_event_of_an_alert_is_its_own_notice_of_the_same_alert() -> None:
    opened = from_alert(
        alert_event(events_pb2.ALERT_STATE_OPEN, 0, events_pb2.SEVERITY_WARNING), NOW
    )
    updated = from_alert(
        alert_event(events_pb2.ALERT_STATE_UPDATED, 1, events_pb2.SEVERITY_CRITICAL), NOW
    )
    closed = from_alert(
        alert_event(events_pb2.ALERT_STATE_CLOSED, 2, events_pb2.SEVERITY_CRITICAL), NOW
    )
    # One delivery per event (the ledger's key), one alert id for all three.
    assert [n.event_id for n in (opened, updated, closed)] == ["a1", "a1-1", "a1-2"]
    assert {n.details["alert_id"] for n in (opened, updated, closed)} == {"a1"}
    assert [n.title for n in (opened, updated, closed)] == [
        "Data drift: churn v2",
        "Data drift (updated): churn v2",
        "Data drift (resolved): churn v2",
    ]
    assert (
        updated.details["state"] == "updated" and updated.details["previous_severity"] == "warning"
    )
    assert updated.details["opened"] == "2026-03-02T11:50:00.000000Z"
    first = [f["first_alarm"] for f in updated.details["features"]]
    assert first == ["2026-03-02T11:50:00.000000Z", "2026-03-02T11:57:00.000000Z"]
    context = body(updated, "slack")["blocks"][3]["elements"][0]["text"]
    assert "alert a1 updated (revision 1)" in context
    fields = body(updated, "slack")["blocks"][2]["fields"]
    assert any("since 2026-03-02T11:57:00.000000Z" in f["text"] for f in fields)


def test_alertmanager_sees_one_alert_firing_then_resolved_whatever_its_severity() -> None:
    firing = body(
        from_alert(alert_event(events_pb2.ALERT_STATE_OPEN, 0, events_pb2.SEVERITY_WARNING), NOW),
        "alertmanager",
    )
    raised = body(
        from_alert(
            alert_event(events_pb2.ALERT_STATE_UPDATED, 1, events_pb2.SEVERITY_CRITICAL), NOW
        ),
        "alertmanager",
    )
    resolved = body(
        from_alert(
            alert_event(events_pb2.ALERT_STATE_CLOSED, 2, events_pb2.SEVERITY_CRITICAL), NOW
        ),
        "alertmanager",
    )
    alerts = [sent["alerts"][0] for sent in (firing, raised, resolved)]
    assert len({a["fingerprint"] for a in alerts}) == 1
    assert [a["labels"]["severity"] for a in alerts] == ["warning", "critical", "critical"]
    assert {a["labels"]["alert_id"] for a in alerts} == {"a1"}
    assert [a["status"] for a in alerts] == ["firing", "firing", "resolved"]
    assert resolved["status"] == "resolved"
    assert {a["startsAt"] for a in alerts} == {"2026-03-02T11:50:00.000000Z"}
    assert [a["endsAt"] for a in alerts] == [
        "0001-01-01T00:00:00Z",
        "0001-01-01T00:00:00Z",
        "2026-03-02T11:59:00.000000Z",
    ]


def test_model_events_become_notices_and_only_the_three_kinds_people_are_told_about() -> None:
    promoted = from_model_event(
        model_event(events_pb2.MODEL_EVENT_KIND_PROMOTED, previous_version="2"), NOW
    )
    assert promoted is not None and promoted.kind == "promoted" and promoted.severity == "info"
    assert promoted.summary == "churn v3 is the new champion (replacing v2)"
    rolled_back = from_model_event(
        model_event(
            events_pb2.MODEL_EVENT_KIND_ROLLED_BACK, previous_version="2", reason="error rate"
        ),
        NOW,
    )
    assert rolled_back is not None and rolled_back.severity == "warning"
    assert rolled_back.details["stable_version"] == "2" and "error rate" in rolled_back.summary
    for state, severity in [
        ("failed", "critical"),
        ("rejected_data", "warning"),
        ("rejected_challenger", "info"),
    ]:
        halted = from_model_event(
            model_event(events_pb2.MODEL_EVENT_KIND_RETRAIN_HALTED, run_id="r1", run_state=state),
            NOW,
        )
        assert halted is not None and halted.kind == "retrain_halted"
        assert halted.severity == severity and halted.details["run_state"] == state
    for kind in (
        events_pb2.MODEL_EVENT_KIND_REGISTERED,
        events_pb2.MODEL_EVENT_KIND_ALIAS_MOVED,
        events_pb2.MODEL_EVENT_KIND_ROLLOUT_STARTED,
        events_pb2.MODEL_EVENT_KIND_ROLLOUT_STEPPED,
    ):
        assert from_model_event(model_event(kind), NOW) is None


def test_a_model_event_id_is_the_same_for_the_same_event_and_differs_for_another() -> None:
    event = model_event(events_pb2.MODEL_EVENT_KIND_PROMOTED)
    again = events_pb2.ModelEvent.FromString(event.SerializeToString())
    later = model_event(events_pb2.MODEL_EVENT_KIND_PROMOTED)
    later.time.CopyFrom(stamp(NOW))
    first, second, third = (from_model_event(e, NOW) for e in (event, again, later))
    assert first is not None and second is not None and third is not None
    assert first.event_id == second.event_id != third.event_id
    assert len(first.event_id) == 32


def test_an_event_without_a_time_or_with_one_beyond_storage_takes_the_records_time() -> None:
    alert = drift_alert()
    alert.ClearField("time")
    assert from_alert(alert, NOW).time == NOW
    alert.time.seconds = 253_402_300_800  # year 10000: neither Python nor ClickHouse has it
    assert from_alert(alert, NOW).time == NOW
    event = model_event(events_pb2.MODEL_EVENT_KIND_PROMOTED)
    event.time.seconds = 11_000_000_000  # year 2318: past ClickHouse's DateTime64
    notice = from_model_event(event, NOW)
    assert notice is not None and notice.time == NOW


def test_a_stored_model_event_is_the_event_with_the_notices_id_and_time() -> None:
    event = model_event(events_pb2.MODEL_EVENT_KIND_ROLLOUT_STEPPED)
    event.run_id, event.alias = "churn-1", "champion"
    row = stored(event, NOW)
    notice = from_model_event(model_event(events_pb2.MODEL_EVENT_KIND_PROMOTED), NOW)
    assert notice is not None
    assert stored(model_event(events_pb2.MODEL_EVENT_KIND_PROMOTED), NOW).event_id == (
        notice.event_id
    ), "the table and the webhook ledger name an event alike"
    assert row.kind == "rollout_stepped" and to_proto(row) == event
    newer = model_event(events_pb2.MODEL_EVENT_KIND_PROMOTED)
    newer.kind = 42  # type: ignore[assignment]  # a kind of a newer producer
    newer.ClearField("time")
    row = stored(newer, NOW)
    assert (row.kind, row.time) == ("kind_42", NOW)
    assert to_proto(row).kind == 42


def test_a_webhook_wants_its_kinds_at_or_above_its_severity() -> None:
    notice = from_alert(drift_alert(), NOW)
    assert notice.wanted(frozenset({"drift_alert"}), "critical")
    assert not notice.wanted(frozenset({"promoted"}), "info")
    info = from_model_event(model_event(events_pb2.MODEL_EVENT_KIND_PROMOTED), NOW)
    assert info is not None and not info.wanted(frozenset({"promoted"}), "warning")


# payload shapes


def body(notice: Notice, shape: Any) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(render(notice, shape, "d-1", "ops"))
    return decoded


def test_the_generic_json_body_is_versioned_and_carries_every_field() -> None:
    notice = from_alert(drift_alert(), NOW)
    sent = body(notice, "json")
    assert sent == {
        "schema": SCHEMA,
        "delivery_id": "d-1",
        "event_id": "a1",
        "kind": "drift_alert",
        "time": "2026-03-02T11:59:00.000000Z",
        "model": "churn",
        "version": "2",
        "severity": "critical",
        "title": "Data drift: churn v2",
        "summary": "2 of 3 features drifted",
        "details": notice.details,
    }
    assert SCHEMA == "driftloop.webhook/v1"
    # Strict JSON: no NaN or Infinity tokens (the infinite CUSUM score went out as null).
    assert b"NaN" not in render(notice, "json", "d", "ops")
    assert b"Infinity" not in render(notice, "json", "d", "ops")


def test_the_slack_body_has_text_and_blocks_within_slacks_limits_and_escapes_markup() -> None:
    notice = from_alert(drift_alert(summary="<!channel> & friends " + "x" * 5000), NOW)
    sent = body(notice, "slack")
    assert set(sent) == {"text", "blocks"}
    assert sent["text"].startswith(":red_circle: Data drift: churn v2: &lt;!channel&gt; &amp;")
    header, summary, fields, context = sent["blocks"]
    assert header == {"type": "header", "text": {"type": "plain_text", "text": notice.title}}
    assert summary["type"] == "section" and summary["text"]["type"] == "mrkdwn"
    assert "<!channel>" not in json.dumps(sent)
    assert len(summary["text"]["text"]) <= 3000 and summary["text"]["text"].endswith("…")
    assert not summary["text"]["text"].rstrip("…").endswith("&am")
    assert len(sent["text"]) <= 3000
    texts = [field["text"] for field in fields["fields"]]
    assert 1 <= len(texts) <= 10 and all(len(text) <= 2000 for text in texts)
    assert texts[:3] == ["*Model*\nchurn", "*Version*\nv2", "*Severity*\ncritical"]
    assert any("tenure psi=0.41" in text for text in texts)
    assert context["type"] == "context" and "a1" in context["elements"][0]["text"]


def test_a_long_title_is_cut_to_slacks_150_character_header() -> None:
    notice = from_model_event(
        model_event(events_pb2.MODEL_EVENT_KIND_PROMOTED, version="9" * 200), NOW
    )
    assert notice is not None
    header = body(notice, "slack")["blocks"][0]["text"]["text"]
    assert len(header) == 150 and header.endswith("…")


def test_the_alertmanager_body_is_a_version_4_webhook_with_one_firing_alert() -> None:
    notice = from_model_event(
        model_event(
            events_pb2.MODEL_EVENT_KIND_RETRAIN_HALTED,
            run_id="churn-1",
            run_state="failed",
            reason="ValueError: boom",
        ),
        NOW,
    )
    assert notice is not None
    sent = body(notice, "alertmanager")
    labels = {
        "alertname": "DriftloopRetrainHalted",
        "model": "churn",
        "version": "3",
        "severity": "critical",
        "source": "driftloop",
        "run_state": "failed",
    }
    assert sent["version"] == "4" and sent["status"] == "firing" and sent["receiver"] == "ops"
    assert sent["groupKey"] == '{}:{alertname="DriftloopRetrainHalted", model="churn"}'
    assert sent["groupLabels"] == {"alertname": "DriftloopRetrainHalted", "model": "churn"}
    assert sent["truncatedAlerts"] == 0 and sent["externalURL"] == ""
    assert sent["commonLabels"] == labels
    (alert,) = sent["alerts"]
    assert set(alert) == {
        "status",
        "labels",
        "annotations",
        "startsAt",
        "endsAt",
        "generatorURL",
        "fingerprint",
    }
    assert alert["status"] == "firing" and alert["labels"] == labels
    assert alert["startsAt"] == "2026-03-02T11:59:55.000000Z"
    assert alert["endsAt"] == "0001-01-01T00:00:00Z"
    assert alert["annotations"]["summary"] == notice.summary
    assert alert["annotations"]["event_id"] == notice.event_id
    assert "Run: churn-1" in alert["annotations"]["description"]
    identity = {k: v for k, v in labels.items() if k != "severity"}
    assert alert["fingerprint"] == fingerprint(identity) and len(alert["fingerprint"]) == 16
    assert all(isinstance(value, str) for value in alert["labels"].values())


def test_a_drift_alert_for_alertmanager_is_labelled_with_its_drift_kind() -> None:
    sent = body(from_alert(drift_alert(), NOW), "alertmanager")
    assert sent["commonLabels"]["alertname"] == "DriftloopDriftAlert"
    assert sent["commonLabels"]["drift_kind"] == "data"


# retries


def test_the_backoff_doubles_is_capped_jittered_and_honours_retry_after_up_to_the_cap() -> None:
    policy = RetryPolicy(timeout_s=1, max_attempts=6, backoff_s=1, backoff_max_s=10)
    failed = Answer(503)
    assert [policy.wait_s(n, failed, 0.0) for n in range(1, 6)] == [0.5, 1, 2, 4, 5]
    assert [policy.wait_s(n, failed, 0.999999) for n in range(1, 6)] == pytest.approx(
        [1, 2, 4, 8, 10], abs=1e-4
    )
    assert policy.wait_s(1, Answer(429, retry_after_s=7), 0.0) == 7
    assert policy.wait_s(1, Answer(429, retry_after_s=600), 0.0) == 10


@pytest.mark.parametrize(
    ("answer", "retryable"),
    [
        (Answer(500), True),
        (Answer(503), True),
        (Answer(429), True),
        (Answer(408), True),
        (Answer(None, "timeout: no answer"), True),
        (Answer(None, "ClientConnectorError"), True),
        (Answer(400), False),
        (Answer(404), False),
        (Answer(301), False),
        (Answer(None, "the webhook URL is not valid", final=True), False),
    ],
)
def test_which_answers_are_tried_again(answer: Answer, retryable: bool) -> None:
    assert answer.retryable is retryable
    assert not answer.delivered


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after("120") == 120
    assert retry_after("Mon, 02 Mar 2026 12:00:30 GMT", now=NOW) == 30
    assert retry_after("Mon, 02 Mar 2026 11:00:00 GMT", now=NOW) == 0
    assert retry_after("soon") is None and retry_after(None) is None


def test_a_delivery_id_is_a_uuid_of_the_webhook_and_the_event() -> None:
    assert delivery_id("ops", "a1") == delivery_id("ops", "a1")
    assert delivery_id("ops", "a1") != delivery_id("pager", "a1") != delivery_id("ops", "a2")
    assert len(delivery_id("ops", "a1")) == 36


# the sender, against in-memory ports


class Receiver:
    """A scripted transport: answers in turn (then 200), recording every request."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.requests: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        self.asked = asyncio.Event()

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float
    ) -> Answer:
        self.requests.append((url, json.loads(body), dict(headers)))
        self.asked.set()
        return self.answers.pop(0) if self.answers else Answer(200)


class MemoryLedger:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], Delivery] = {}
        self.fail_next_records = 0

    async def finished(self, webhook: str, event_ids: Sequence[str]) -> set[str]:
        return {e for e in event_ids if (webhook, e) in self.rows}

    async def record(self, delivery: Delivery) -> None:
        if self.fail_next_records:
            self.fail_next_records -= 1
            raise ConnectionError("ClickHouse is down")
        self.rows[(delivery.webhook, delivery.event_id)] = delivery


class Letters:
    def __init__(self) -> None:
        self.letters: list[tuple[int, str, Stage]] = []

    async def publish(self, record: RawRecord, reason: str, stage: Stage = "decode") -> None:
        self.letters.append((record.offset, reason, stage))


def sender(
    receiver: Receiver,
    ledger: MemoryLedger,
    letters: Letters,
    *webhooks: Webhook,
    max_attempts: int = 4,
) -> WebhookSender:
    return WebhookSender(
        webhooks or [Webhook(name="ops", url=SECRET_URL)],
        receiver,
        ledger,
        letters,
        RetryPolicy(timeout_s=1, max_attempts=max_attempts, backoff_s=0.001, backoff_max_s=0.01),
        dt.timedelta(hours=1),
        clock=lambda: NOW,
    )


async def test_each_event_goes_once_to_each_webhook_that_wants_it() -> None:
    receiver, ledger, letters = Receiver(), MemoryLedger(), Letters()
    slack = Webhook(name="chat", url=SECRET_URL, format="slack", events=frozenset({"promoted"}))
    send = sender(receiver, ledger, letters, Webhook(name="ops", url=SECRET_URL), slack)
    records = [
        record(drift_alert("a1"), 0),
        record(model_event(events_pb2.MODEL_EVENT_KIND_PROMOTED), 0),
        record(model_event(events_pb2.MODEL_EVENT_KIND_REGISTERED), 1),
        record(drift_alert("a1"), 1),  # the same alert published twice
    ]
    await send.handle(records)
    await send.handle(records)  # the batch re-delivered
    sent = [
        (h["X-Driftloop-Event-Kind"], b.get("schema", "slack")) for _, b, h in receiver.requests
    ]
    assert sorted(sent) == sorted(
        [("drift_alert", SCHEMA), ("promoted", SCHEMA), ("promoted", "slack")]
    )
    assert {key[0] for key in ledger.rows} == {"ops", "chat"} and len(ledger.rows) == 3
    assert all(d.outcome == "delivered" and d.attempts == 1 for d in ledger.rows.values())
    assert not letters.letters


async def test_each_event_of_an_alert_is_one_delivery_and_a_replay_none() -> None:
    receiver, ledger, letters = Receiver(), MemoryLedger(), Letters()
    send = sender(receiver, ledger, letters)
    opened = alert_event(events_pb2.ALERT_STATE_OPEN, 0, events_pb2.SEVERITY_WARNING)
    updated = alert_event(events_pb2.ALERT_STATE_UPDATED, 1, events_pb2.SEVERITY_CRITICAL)
    closed = alert_event(events_pb2.ALERT_STATE_CLOSED, 2, events_pb2.SEVERITY_CRITICAL)
    await send.handle([record(opened, 0), record(updated, 1)])
    await send.handle([record(updated, 1), record(closed, 2)])  # a replay, then the close
    ids = [h["X-Driftloop-Event-Id"] for _, _, h in receiver.requests]
    assert ids == ["a1", "a1-1", "a1-2"]
    assert [b["details"]["state"] for _, b, _ in receiver.requests] == [
        "open",
        "updated",
        "closed",
    ]


async def test_a_failing_receiver_gets_the_event_after_retries_with_one_delivery_id() -> None:
    receiver = Receiver(Answer(503), Answer(None, "timeout: no answer within 1 s"))
    ledger, letters = MemoryLedger(), Letters()
    await sender(receiver, ledger, letters).handle([record(drift_alert())])
    assert [h["X-Driftloop-Attempt"] for _, _, h in receiver.requests] == ["1", "2", "3"]
    ids = {h["X-Driftloop-Delivery-Id"] for _, _, h in receiver.requests}
    assert ids == {delivery_id("ops", "a1")}
    assert ledger.rows[("ops", "a1")].attempts == 3
    assert ledger.rows[("ops", "a1")].outcome == "delivered" and not letters.letters


async def test_a_receiver_that_never_takes_it_ends_in_dead_letter_once() -> None:
    receiver = Receiver(*[Answer(500, "oops")] * 10)
    ledger, letters = MemoryLedger(), Letters()
    send = sender(receiver, ledger, letters, max_attempts=3)
    await send.handle([record(drift_alert(), offset=7)])
    await send.handle([record(drift_alert(), offset=7)])
    assert len(receiver.requests) == 3
    (letter,) = letters.letters
    assert letter == (
        7,
        "webhook ops: not delivered after 3 attempt(s): HTTP 500: oops",
        "deliver",
    )
    assert ledger.rows[("ops", "a1")].outcome == "dead_lettered"
    assert ledger.rows[("ops", "a1")].status == 500


async def test_a_refusal_is_not_tried_again() -> None:
    receiver, ledger, letters = Receiver(Answer(400, "invalid_payload")), MemoryLedger(), Letters()
    await sender(receiver, ledger, letters).handle([record(drift_alert())])
    assert len(receiver.requests) == 1
    assert "HTTP 400: invalid_payload" in letters.letters[0][1]


async def test_an_outcome_the_ledger_failed_to_keep_is_written_on_the_retry_not_sent_again() -> (
    None
):
    receiver, ledger, letters = Receiver(), MemoryLedger(), Letters()
    ledger.fail_next_records = 1
    send = sender(receiver, ledger, letters)
    with pytest.raises(ConnectionError):
        await send.handle([record(drift_alert())])
    assert len(receiver.requests) == 1 and not ledger.rows
    await send.handle([record(drift_alert())])  # the consumer retries the batch
    assert len(receiver.requests) == 1
    assert ledger.rows[("ops", "a1")].outcome == "delivered"


async def test_events_older_than_the_maximum_age_are_not_sent() -> None:
    receiver, ledger, letters = Receiver(), MemoryLedger(), Letters()
    old = drift_alert()
    old.time.CopyFrom(stamp(NOW - dt.timedelta(hours=2)))
    await sender(receiver, ledger, letters).handle([record(old)])
    assert not receiver.requests and not ledger.rows


async def test_stopping_during_a_backoff_fails_the_batch_without_an_outcome() -> None:
    receiver, ledger, letters = Receiver(*[Answer(503)] * 10), MemoryLedger(), Letters()
    send = WebhookSender(
        [Webhook(name="ops", url=SECRET_URL)],
        receiver,
        ledger,
        letters,
        RetryPolicy(timeout_s=1, max_attempts=5, backoff_s=30, backoff_max_s=30),
        dt.timedelta(hours=1),
        clock=lambda: NOW,
    )
    task = asyncio.create_task(send.handle([record(drift_alert())]))
    await asyncio.wait_for(receiver.asked.wait(), 5)
    send.stop()
    with pytest.raises(Stopping):
        await asyncio.wait_for(task, 5)
    assert not ledger.rows and not letters.letters


# settings


def test_webhooks_are_read_from_a_json_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "DRIFTLOOP_DRIFT_WEBHOOKS",
        json.dumps(
            [
                {"name": "ops", "url": SECRET_URL},
                {
                    "name": "pager",
                    "url": "http://127.0.0.1:9093/api",
                    "format": "alertmanager",
                    "events": ["drift_alert", "rolled_back"],
                    "min_severity": "critical",
                    "headers": {"Authorization": "Bearer t"},
                },
            ]
        ),
    )
    ops, pager = load_settings(DriftSettings).webhooks
    assert ops.format == "json" and ops.events == {
        "drift_alert",
        "promoted",
        "rolled_back",
        "retrain_halted",
    }
    assert pager.format == "alertmanager" and pager.events == {"drift_alert", "rolled_back"}
    assert pager.min_severity == "critical" and pager.headers == {"Authorization": "Bearer t"}
    monkeypatch.delenv("DRIFTLOOP_DRIFT_WEBHOOKS")
    assert load_settings(DriftSettings).webhooks == []


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('[{"name": "ops", "url": "ftp://x/s3cr3t"}]', "[0].url: must be an http"),
        ('[{"name": "ops", "url": "https://x/s3cr3t",', "not a JSON list of webhooks"),
        ('[{"name": "ops", "url": "https://x/s3cr3t", "format": "xml"}]', "[0].format"),
        ('[{"name": "ops", "url": "https://x/s3cr3t", "events": []}]', "[0].events"),
        (
            '[{"name": "ops", "url": "https://x/s3cr3t", "headers": {"X": "a\\r\\nHost: y"}}]',
            "[0].headers: the value of header X has a line break",
        ),
        (
            '[{"name": "ops", "url": "https://x/s3cr3t", "headers": {"X Y": "z"}}]',
            "[0].headers: a header name must be an HTTP token",
        ),
        (
            '[{"name": "ops", "url": "https://x/s3cr3t"}, {"name": "ops", "url": "https://y"}]',
            "webhook names must be unique: ops repeated",
        ),
    ],
)
def test_a_bad_webhook_setting_is_named_without_showing_its_url(
    monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    monkeypatch.setenv("DRIFTLOOP_DRIFT_WEBHOOKS", value)
    with pytest.raises(ConfigError) as raised:
        load_settings(DriftSettings)
    assert "DRIFTLOOP_DRIFT_WEBHOOKS" in str(raised.value)
    assert message in str(raised.value)
    assert "s3cr3t" not in str(raised.value)
