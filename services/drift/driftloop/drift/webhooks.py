"""Alerts to webhooks: each event to each webhook that wants it, once in effect.

The webhook consumer (a consumer group of its own on drift-alerts and model-events) hands
each batch to `WebhookSender.handle`, and commits the offsets after it returns. For each
event and each webhook that wants it (its kinds, its minimum severity):
1. the delivery ledger (keyed by webhook and event id) is read first: an event it holds
   as delivered or dead-lettered is not sent again, whether the record came back after a
   restart, a rebalance to another replica or a retried batch;
2. the body is POSTed with `X-Driftloop-Delivery-Id` (a UUID of the webhook and the event:
   the same on every attempt and in every process), `X-Driftloop-Event-Id`,
   `X-Driftloop-Event-Kind` and `X-Driftloop-Attempt`;
3. a 2xx answer is a delivery; 408, 425, 429, 5xx, a timeout (each attempt has its own
   deadline) or no answer at all are tried again, up to the maximum attempts, after an
   exponential backoff with jitter (capped; a Retry-After is honoured up to the cap); any
   other answer (a 3xx or 4xx: the request itself is wrong) ends the tries at once;
4. the outcome is written to the ledger at once: delivered, or dead-lettered after the
   record went to dead-letter with the webhook's name and the last failure as the reason.
Webhooks are served side by side; one webhook's events go in record order.

A crash between a receiver's 2xx and its ledger row sends the event again after the
restart, with the same delivery id, which a receiver that remembers the ids it has seen
drops: that is as close to exactly once as a receiver that does not take part in a
transaction allows. Within one process, an outcome whose ledger row could not be written
is kept and written first when the batch is tried again: it is not sent again. A crash
between a dead letter and its ledger row tries the event again (it may be dead-lettered
twice).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from driftloop.drift import metrics
from driftloop.drift.config import Webhook
from driftloop.drift.notices import Notice, from_alert, from_model_event
from driftloop.drift.payloads import render
from driftloop.kafka.consumer import Record
from driftloop.kafka.dead_letter import RawRecord, Stage
from driftloop.kit.errors import Unavailable
from driftloop.kit.throttle import Throttle
from driftloop.v1 import events_pb2

log = logging.getLogger(__name__)

LOG_INTERVAL_S = 30.0
# Delivery ids are UUIDs in a namespace of driftloop's own (a fixed, random UUID).
DELIVERY_NAMESPACE = uuid.UUID("0f6c7f1e-5d3b-4c59-9a43-b8d1c3e6a2f4")
RETRYABLE_STATUSES = frozenset({408, 425, 429})
Outcome = Literal["delivered", "dead_lettered"]


@dataclass(frozen=True)
class Answer:
    """What one HTTP attempt came to: a status, or none (timeout, connection failure)."""

    status: int | None
    error: str = ""
    retry_after_s: float | None = None
    # No status and no point in trying again (an address that cannot be requested at all).
    final: bool = False

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def retryable(self) -> bool:
        if self.status is None:
            return not self.final
        return self.status in RETRYABLE_STATUSES or self.status >= 500

    @property
    def result(self) -> str:
        """The metric label: 2xx ... 5xx, timeout or error."""
        if self.status is None:
            return "timeout" if self.error.startswith("timeout") else "error"
        return f"{self.status // 100}xx"

    def describe(self) -> str:
        if self.status is None:
            return self.error
        return f"HTTP {self.status}" + (f": {self.error}" if self.error else "")


class Transport(Protocol):
    """POSTs a body; answers, never raises for what the network or the receiver did."""

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float
    ) -> Answer: ...


@dataclass(frozen=True)
class Delivery:
    """How one event ended for one webhook: a row of the delivery ledger."""

    webhook: str
    event_id: str
    delivery_id: str
    kind: str
    model: str
    outcome: Outcome
    attempts: int
    status: int
    error: str
    event_time: dt.datetime
    finished: dt.datetime


class Ledger(Protocol):
    async def finished(self, webhook: str, event_ids: Sequence[str]) -> set[str]:
        """The ids among `event_ids` the webhook has an outcome for."""
        ...

    async def record(self, delivery: Delivery) -> None: ...


class DeadLetterSink(Protocol):
    async def publish(self, record: RawRecord, reason: str, stage: Stage = "decode") -> None: ...


@dataclass(frozen=True)
class RetryPolicy:
    timeout_s: float = 5.0
    max_attempts: int = 6
    backoff_s: float = 1.0
    backoff_max_s: float = 60.0

    def wait_s(self, attempt: int, answer: Answer, draw: float) -> float:
        """The wait after failed attempt `attempt` (from 1): the doubling backoff, capped,
        its second half jittered by `draw` in [0, 1); at least the receiver's Retry-After,
        capped likewise."""
        ceiling = min(self.backoff_max_s, self.backoff_s * 2.0 ** (attempt - 1))
        wait = ceiling / 2 + ceiling / 2 * draw
        if answer.retry_after_s is not None:
            wait = max(wait, min(answer.retry_after_s, self.backoff_max_s))
        return wait


class Stopping(Unavailable):
    """The service is stopping: the batch in hand is left uncommitted (read again later)."""


def delivery_id(webhook: str, event_id: str) -> str:
    """The idempotency key a receiver sees: the same for an event and a webhook, always."""
    return str(uuid.uuid5(DELIVERY_NAMESPACE, f"{webhook}/{event_id}"))


def notice_of(record: Record) -> Notice | None:
    """The notice a consumed record carries (None: a model event nobody is told about)."""
    published = dt.datetime.fromtimestamp(record.timestamp_ms / 1000, dt.UTC)
    if isinstance(record.value, events_pb2.DriftAlert):
        return from_alert(record.value, published)
    if isinstance(record.value, events_pb2.ModelEvent):
        return from_model_event(record.value, published)
    raise TypeError(f"no notice for {type(record.value).__name__} records")


class WebhookSender:
    def __init__(
        self,
        webhooks: Sequence[Webhook],
        transport: Transport,
        ledger: Ledger,
        dead_letters: DeadLetterSink,
        policy: RetryPolicy,
        max_age: dt.timedelta,
        *,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        draw: Callable[[], float] = random.random,
    ) -> None:
        self._webhooks = list(webhooks)
        self._transport = transport
        self._ledger = ledger
        self._dead_letters = dead_letters
        self._policy = policy
        self._max_age = max_age
        self._clock = clock
        self._draw = draw
        self._throttle = Throttle(LOG_INTERVAL_S)
        self._stopping = asyncio.Event()
        # Outcomes reached whose ledger row is not written yet (the ledger failed).
        self._unrecorded: dict[tuple[str, str], Delivery] = {}

    def stop(self) -> None:
        """Stop waiting between attempts: the batch in hand fails, uncommitted."""
        self._stopping.set()

    async def handle(self, records: Sequence[Record]) -> None:
        """The consumer's batch handler: returns once every event has its outcome recorded."""
        for key, delivery in list(self._unrecorded.items()):
            await self._ledger.record(delivery)
            del self._unrecorded[key]
        notices = [(record, notice) for record in records if (notice := notice_of(record))]
        if not notices:
            return
        results = await asyncio.gather(
            *(self._serve(webhook, notices) for webhook in self._webhooks),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _serve(self, webhook: Webhook, notices: Sequence[tuple[Record, Notice]]) -> None:
        """One webhook's share of a batch, in record order."""
        now = self._clock()
        due = []
        for record, notice in notices:
            if not notice.wanted(webhook.events, webhook.min_severity):
                continue
            if now - notice.time > self._max_age:
                self._count(webhook, "stale")
                self._warn(
                    webhook,
                    "stale",
                    "event older than the maximum age not sent",
                    event_id=notice.event_id,
                    age_s=round((now - notice.time).total_seconds()),
                )
                continue
            due.append((record, notice))
        if not due:
            return
        done = await self._ledger.finished(webhook.name, [n.event_id for _, n in due])
        for record, notice in due:
            if notice.event_id in done or (webhook.name, notice.event_id) in self._unrecorded:
                self._count(webhook, "duplicate")
                continue
            done.add(notice.event_id)
            delivery = await self._deliver(webhook, notice)
            if delivery.outcome == "dead_lettered":
                await self._dead_letters.publish(
                    record.message(),
                    f"webhook {webhook.name}: not delivered after {delivery.attempts} "
                    f"attempt(s): {delivery.error}",
                    "deliver",
                )
            self._count(webhook, delivery.outcome)
            self._unrecorded[(webhook.name, notice.event_id)] = delivery
            await self._ledger.record(delivery)
            del self._unrecorded[(webhook.name, notice.event_id)]

    async def _deliver(self, webhook: Webhook, notice: Notice) -> Delivery:
        """Attempts until a 2xx, a final answer or the last attempt."""
        key = delivery_id(webhook.name, notice.event_id)
        body = render(notice, webhook.format, key, webhook.name)
        headers = {
            **webhook.headers,
            "Content-Type": "application/json",
            "User-Agent": "driftloop-webhooks/1",
            "X-Driftloop-Delivery-Id": key,
            "X-Driftloop-Event-Id": notice.event_id,
            "X-Driftloop-Event-Kind": notice.kind,
        }
        attempt = 0
        while True:
            attempt += 1
            started = time.monotonic()
            answer = await self._transport.post(
                webhook.url,
                body,
                {**headers, "X-Driftloop-Attempt": str(attempt)},
                self._policy.timeout_s,
            )
            metrics.WEBHOOK_ATTEMPT_SECONDS.labels(webhook.name).observe(time.monotonic() - started)
            metrics.WEBHOOK_ATTEMPTS.labels(webhook.name, answer.result).inc()
            if answer.delivered or not answer.retryable or attempt >= self._policy.max_attempts:
                break
            wait = self._policy.wait_s(attempt, answer, self._draw())
            self._warn(
                webhook,
                "retry",
                "webhook attempt failed; trying again",
                event_id=notice.event_id,
                attempt=attempt,
                error=answer.describe(),
                retry_in_s=round(wait, 3),
            )
            await self._pause(wait)
        outcome: Outcome = "delivered" if answer.delivered else "dead_lettered"
        return Delivery(
            webhook=webhook.name,
            event_id=notice.event_id,
            delivery_id=key,
            kind=notice.kind,
            model=notice.model,
            outcome=outcome,
            attempts=attempt,
            status=answer.status or 0,
            error="" if answer.delivered else answer.describe(),
            event_time=notice.time,
            finished=self._clock(),
        )

    async def _pause(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            return
        raise Stopping("stopping between webhook attempts; the batch is read again later")

    def _count(self, webhook: Webhook, outcome: str) -> None:
        metrics.WEBHOOK_DELIVERIES.labels(webhook.name, outcome).inc()

    def _warn(self, webhook: Webhook, what: str, message: str, **extra: object) -> None:
        held_back = self._throttle.allow((webhook.name, what))
        if held_back is not None:
            log.warning(message, extra={"webhook": webhook.name, **extra, "held_back": held_back})
