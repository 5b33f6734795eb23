"""Alerts to webhooks end to end: the drift service's webhook consumer on the real broker,
its delivery ledger in the real ClickHouse engine, and an HTTP receiver on 127.0.0.1 that
the test starts, scripts and stops."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from google.protobuf.message import Message
from prometheus_client import REGISTRY

from driftloop.clickhouse.client import ClickHouse
from driftloop.drift.config import DriftSettings, Webhook
from driftloop.drift.online import OnlineAlarm
from driftloop.drift.server import DriftService
from driftloop.drift.webhooks import delivery_id
from driftloop.kafka.producer import EventProducer
from driftloop.kafka.topics import GroupNames, TopicNames
from driftloop.kit.settings import KafkaSettings
from driftloop.kit.times import stamp
from driftloop.v1 import events_pb2
from tests.conftest import unique_name
from tests.integration.stack import read_topic, rewind, until


@dataclass
class Received:
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class Receiver:
    """An HTTP server on a free port of 127.0.0.1: POST /<name> is recorded under name and
    answered with the next status scripted for it (then 200)."""

    script: dict[str, list[int]] = field(default_factory=dict)
    requests: defaultdict[str, list[Received]] = field(default_factory=lambda: defaultdict(list))
    base: str = ""
    _runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{name}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base = f"http://{host}:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def url(self, name: str) -> str:
        return f"{self.base}/{name}"

    async def _handle(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.requests[name].append(Received(dict(request.headers), await request.json()))
        script = self.script.get(name, [])
        status = script.pop(0) if script else 200
        return web.Response(status=status, text="ok" if status < 300 else f"failing ({status})")

    def event_ids(self, name: str) -> list[str]:
        return [r.headers["X-Driftloop-Event-Id"] for r in self.requests[name]]


@dataclass
class Webhooks:
    kafka: KafkaSettings
    clickhouse: ClickHouse
    receiver: Receiver
    producer: EventProducer
    names: TopicNames
    services: list[DriftService] = field(default_factory=list)

    async def start(self, *webhooks: Webhook, **options: Any) -> DriftService:
        assert self.kafka.bootstrap_servers is not None
        settings = DriftSettings(
            host="127.0.0.1",
            port=0,
            registry_target="127.0.0.1:1",  # never asked: no predictions flow here
            evaluate_every_s=3600,
            evaluate_every_rows=0,
            webhooks=list(webhooks),
            webhook_timeout_s=2,
            webhook_max_attempts=3,
            webhook_backoff_s=0.05,
            webhook_backoff_max_s=0.2,
            **options,
        )
        service = DriftService(settings, self.kafka, self.kafka.bootstrap_servers, self.clickhouse)
        await service.start()
        self.services.append(service)
        return service

    async def stop(self, service: DriftService) -> None:
        await service.stop(grace=1)
        self.services.remove(service)

    async def publish(self, topic: str, events: Sequence[Message]) -> None:
        for event in events:
            await self.producer.publish(topic, "churn", event)

    async def ledger(self) -> list[tuple[str, str, str, int]]:
        result = await self.clickhouse.query(
            f"SELECT webhook, event_id, toString(outcome), attempts FROM "
            f"{self.clickhouse.table('webhook_deliveries')} FINAL ORDER BY webhook, event_id"
        )
        return [(str(w), str(e), str(o), int(a)) for w, e, o, a in result.rows]

    async def rewind(self) -> None:
        """Every record delivered to the webhook group again."""
        await rewind(
            self.kafka,
            GroupNames(self.kafka.topic_prefix).drift_webhooks,
            (self.names.drift_alerts, self.names.model_events),
        )


@pytest.fixture
async def hooks(kafka_settings: KafkaSettings, clickhouse: ClickHouse) -> AsyncIterator[Webhooks]:
    assert kafka_settings.bootstrap_servers is not None
    receiver = Receiver()
    await receiver.start()
    producer = EventProducer(kafka_settings, kafka_settings.bootstrap_servers)
    await producer.start()
    hooks = Webhooks(
        kafka_settings, clickhouse, receiver, producer, TopicNames(kafka_settings.topic_prefix)
    )
    try:
        yield hooks
    finally:
        for service in list(hooks.services):
            await hooks.stop(service)
        await producer.stop()
        await receiver.stop()


def alert(alert_id: str, severity: int = events_pb2.SEVERITY_CRITICAL) -> events_pb2.DriftAlert:
    return events_pb2.DriftAlert(
        alert_id=alert_id,
        kind=events_pb2.DRIFT_KIND_DATA,
        model="churn",
        version="1",
        severity=severity,  # type: ignore[arg-type]  # an enum value passed as int
        summary=f"alert {alert_id}",
        time=stamp(dt.datetime.now(dt.UTC)),
        features=[events_pb2.FeatureScore(feature="tenure", test="psi", score=0.3)],
    )


def model_event(kind: int, version: str, **fields: str) -> events_pb2.ModelEvent:
    event = events_pb2.ModelEvent(
        kind=kind,  # type: ignore[arg-type]  # an enum value passed as int
        model="churn",
        version=version,
        previous_version="1",
        actor="controller",
        time=stamp(dt.datetime.now(dt.UTC)),
    )
    for name, value in fields.items():
        setattr(event, name, value)
    return event


def counted(webhook: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "driftloop_drift_webhook_deliveries_total", {"webhook": webhook, "outcome": outcome}
    )
    return value or 0.0


async def test_each_event_reaches_each_webhook_once_in_its_shape(hooks: Webhooks) -> None:
    receiver = hooks.receiver
    ops, chat, pager = (unique_name(name) for name in ("ops", "chat", "pager"))
    await hooks.start(
        Webhook(name=ops, url=receiver.url("ops")),
        Webhook(
            name=chat,
            url=receiver.url("chat"),
            format="slack",
            events=frozenset({"drift_alert", "rolled_back"}),
        ),
        Webhook(
            name=pager, url=receiver.url("pager"), format="alertmanager", min_severity="warning"
        ),
    )
    alerts = [alert("a1"), alert("a2", events_pb2.SEVERITY_WARNING), alert("a3")]
    await hooks.publish(hooks.names.drift_alerts, alerts)
    await hooks.publish(
        hooks.names.model_events,
        [
            model_event(events_pb2.MODEL_EVENT_KIND_REGISTERED, "2"),  # nobody is told
            model_event(events_pb2.MODEL_EVENT_KIND_PROMOTED, "2"),
            model_event(events_pb2.MODEL_EVENT_KIND_ROLLED_BACK, "3", reason="error rate"),
            model_event(
                events_pb2.MODEL_EVENT_KIND_RETRAIN_HALTED,
                "2",
                run_id="churn-9",
                run_state="failed",
                reason="ValueError: boom",
            ),
        ],
    )

    async def all_recorded() -> bool:
        return len(await hooks.ledger()) == 6 + 4 + 5

    await until(all_recorded)
    # ops: every event; chat: the alerts and the rollback; pager: all but the (info) promotion.
    kinds = {
        name: sorted(r.headers["X-Driftloop-Event-Kind"] for r in receiver.requests[name])
        for name in ("ops", "chat", "pager")
    }
    assert kinds == {
        "ops": ["drift_alert"] * 3 + ["promoted", "retrain_halted", "rolled_back"],
        "chat": ["drift_alert"] * 3 + ["rolled_back"],
        "pager": ["drift_alert"] * 3 + ["retrain_halted", "rolled_back"],
    }
    for name in ("ops", "chat", "pager"):
        ids = receiver.event_ids(name)
        assert len(ids) == len(set(ids)), f"{name} got an event twice"
    assert {"a1", "a2", "a3"} <= set(receiver.event_ids("ops"))
    first = receiver.requests["ops"][0]
    assert first.body["schema"] == "driftloop.webhook/v1"
    assert first.headers["X-Driftloop-Delivery-Id"] == delivery_id(ops, first.body["event_id"])
    assert first.headers["Content-Type"] == "application/json"
    assert all({"text", "blocks"} == set(r.body) for r in receiver.requests["chat"])
    assert all(r.body["version"] == "4" for r in receiver.requests["pager"])
    halted = [r for r in receiver.requests["pager"] if "run_state" in r.body["commonLabels"]]
    assert halted[0].body["alerts"][0]["labels"]["severity"] == "critical"
    ledger = await hooks.ledger()
    assert {outcome for _, _, outcome, _ in ledger} == {"delivered"}
    assert counted(ops, "delivered") == 6


async def test_an_alerts_open_update_and_close_are_one_delivery_each_of_one_alert(
    hooks: Webhooks,
) -> None:
    receiver = hooks.receiver
    ops, pager = unique_name("ops"), unique_name("pager")
    service = await hooks.start(
        Webhook(name=ops, url=receiver.url("ops")),
        Webhook(name=pager, url=receiver.url("pager"), format="alertmanager"),
        alert_debounce_s=0,
        alert_quiet_events=100,
    )
    now = dt.datetime.now(dt.UTC)

    def alarm(stream: str, index: int) -> tuple[OnlineAlarm, dt.datetime]:
        return OnlineAlarm("data", stream, index, index - 10, 1, 25.0), now

    # The service's own alerts: published to drift-alerts (and drift_alerts) as it runs.
    await service.alerts.from_online("churn", "1", [alarm("tenure", 10)], 20)
    await service.alerts.from_online("churn", "1", [alarm("charges", 30)], 40)
    await service.alerts.from_online("churn", "1", [], 140)  # 100 quiet events: closed

    async def all_recorded() -> bool:
        return len(await hooks.ledger()) == 6

    await until(all_recorded)
    bodies = [r.body for r in receiver.requests["ops"]]
    alert_id = bodies[0]["details"]["alert_id"]
    assert receiver.event_ids("ops") == [alert_id, f"{alert_id}-1", f"{alert_id}-2"]
    assert [(b["details"]["state"], b["title"]) for b in bodies] == [
        ("open", "Data drift: churn v1"),
        ("updated", "Data drift (updated): churn v1"),
        ("closed", "Data drift (resolved): churn v1"),
    ]
    assert [f["feature"] for f in bodies[1]["details"]["features"]] == ["tenure", "charges"]
    paged = [r.body["alerts"][0] for r in receiver.requests["pager"]]
    assert len({a["fingerprint"] for a in paged}) == 1
    assert [a["status"] for a in paged] == ["firing", "firing", "resolved"]
    assert {a["labels"]["alert_id"] for a in paged} == {alert_id}


async def test_a_receiver_failing_the_first_attempts_gets_the_event_after_retries(
    hooks: Webhooks,
) -> None:
    receiver = hooks.receiver
    receiver.script["flaky"] = [503, 500]
    flaky = unique_name("flaky")
    await hooks.start(Webhook(name=flaky, url=receiver.url("flaky")))
    await hooks.publish(hooks.names.drift_alerts, [alert("r1")])

    async def recorded() -> bool:
        return len(await hooks.ledger()) == 1

    await until(recorded)
    requests = receiver.requests["flaky"]
    assert [r.headers["X-Driftloop-Attempt"] for r in requests] == ["1", "2", "3"]
    assert {r.headers["X-Driftloop-Delivery-Id"] for r in requests} == {delivery_id(flaky, "r1")}
    assert await hooks.ledger() == [(flaky, "r1", "delivered", 3)]
    assert not await read_topic(hooks.kafka, hooks.names.dead_letter, 1, seconds=1)


async def test_a_receiver_always_failing_ends_in_dead_letter_once(hooks: Webhooks) -> None:
    receiver = hooks.receiver
    receiver.script["down"] = [500] * 100
    down = unique_name("down")
    await hooks.start(Webhook(name=down, url=receiver.url("down")))
    sent = alert("d1")
    await hooks.publish(hooks.names.drift_alerts, [sent])

    async def recorded() -> bool:
        return len(await hooks.ledger()) == 1

    await until(recorded)
    assert await hooks.ledger() == [(down, "d1", "dead_lettered", 3)]
    assert len(receiver.requests["down"]) == 3
    (raw,) = await read_topic(hooks.kafka, hooks.names.dead_letter, 1)
    letter = events_pb2.DeadLetter.FromString(raw)
    assert letter.topic == hooks.names.drift_alerts and letter.consumer_group == "drift-webhooks"
    assert events_pb2.DriftAlert.FromString(letter.value) == sent
    assert letter.reason == (
        f"webhook {down}: not delivered after 3 attempt(s): HTTP 500: failing (500)"
    )
    assert counted(down, "dead_lettered") == 1


async def test_a_restarted_sender_given_every_record_again_sends_none_twice(
    hooks: Webhooks,
) -> None:
    receiver = hooks.receiver
    ops = unique_name("ops")
    webhook = Webhook(name=ops, url=receiver.url("ops"))
    first = await hooks.start(webhook)
    await hooks.publish(hooks.names.drift_alerts, [alert("s1"), alert("s2"), alert("s3")])
    await hooks.publish(
        hooks.names.model_events, [model_event(events_pb2.MODEL_EVENT_KIND_PROMOTED, "2")]
    )

    async def recorded(count: int) -> bool:
        return len(await hooks.ledger()) == count

    await until(lambda: recorded(4))
    await hooks.stop(first)
    await hooks.rewind()
    duplicates = counted(ops, "duplicate")
    await hooks.start(webhook)
    await hooks.publish(hooks.names.drift_alerts, [alert("s4")])
    await until(lambda: recorded(5))

    async def every_record_read_again() -> bool:
        return counted(ops, "duplicate") - duplicates == 4

    await until(every_record_read_again)
    ids = receiver.event_ids("ops")
    assert len(ids) == 5 and len(set(ids)) == 5
    assert {"s1", "s2", "s3", "s4"} <= set(ids)


async def test_a_delivery_the_ledger_lost_is_sent_again_with_the_same_delivery_id(
    hooks: Webhooks,
) -> None:
    """The crash window between a receiver's 2xx and the ledger row, made wide: the rows are
    gone and every record comes back. The receiver gets each event again, under the same
    X-Driftloop-Delivery-Id, so one that keeps the ids it has seen takes each once."""
    receiver = hooks.receiver
    ops = unique_name("ops")
    webhook = Webhook(name=ops, url=receiver.url("ops"))
    first = await hooks.start(webhook)
    await hooks.publish(hooks.names.drift_alerts, [alert("c1"), alert("c2")])

    async def recorded() -> bool:
        return len(await hooks.ledger()) == 2

    await until(recorded)
    await hooks.stop(first)
    await hooks.clickhouse.command(f"TRUNCATE TABLE {hooks.clickhouse.table('webhook_deliveries')}")
    await hooks.rewind()
    await hooks.start(webhook)
    await until(recorded)
    keys = [r.headers["X-Driftloop-Delivery-Id"] for r in receiver.requests["ops"]]
    assert sorted(keys) == sorted([delivery_id(ops, "c1"), delivery_id(ops, "c2")] * 2)
    assert len(set(keys)) == 2
