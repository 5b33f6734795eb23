"""Answering mirrored requests with the shadow versions: the shadow service's core.

The gateway mirrors a sampled share of live requests, with the live answer, to the
`shadow-requests` topic and never waits for them. This core is the consumer's batch
handler: each request is sent to each of its shadow versions (on the inference service,
with a deadline), and the shadow's answer (or its failure: the status name, no output) is
published to `predictions` as a PredictionEvent with role=shadow, the live request's id,
time, variant and features. The drift service logs it beside the live row, so the two
pair on the request id, and watches the shadow's traffic for drift like any version's.

- Idempotent: the event carries the live request's time, so a re-delivered request makes
  the same row key (model, version, role, time, request id) and is stored once.
- Never retried for ever: one call per shadow version within the deadline (the pool
  fails over between inference endpoints within it); a failure is recorded as the
  shadow's error, which the comparison counts.
- Falls behind, then samples: when the oldest request of a batch is older than
  `max_lag_s`, only a share of requests is answered: max_lag_s / lag rounded down to a
  power of two (1/2, 1/4, ...; at least `min_share`), chosen by a hash of the request id.
  The shares are powers of two so the choice is stable: a re-delivered request is answered
  again unless the lag has crossed a power of two meanwhile, and the requests answered at
  a share are a subset of those answered at twice that share. The rest are counted as
  skipped, and the lag and the skipped share are exposed.
- Bounded: at most `concurrency` calls in flight.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from driftloop.kafka.consumer import Record
from driftloop.shadow import metrics
from driftloop.v1 import common_pb2, events_pb2

BUCKETS = 10_000


class ShadowModels(Protocol):
    """Calls one version of a model (the inference service)."""

    async def predict(
        self, model: str, version: str, request_id: str, features: common_pb2.Row, timeout_s: float
    ) -> common_pb2.Output: ...


class ShadowEvents(Protocol):
    """Publishes the shadows' answers (to `predictions`); returns once acknowledged."""

    async def publish(self, events: Sequence[events_pb2.PredictionEvent]) -> None: ...


@dataclass(frozen=True)
class MirrorSettings:
    timeout_s: float = 1.0
    concurrency: int = 64
    max_lag_s: float = 30.0
    min_share: float = 0.05


@dataclass
class MirrorState:
    """What the service reports about itself (GetShadowStatus, metrics)."""

    answered: int = 0
    failed: int = 0
    skipped: int = 0
    lag_s: float = 0.0

    @property
    def skipped_share(self) -> float:
        total = self.answered + self.failed + self.skipped
        return self.skipped / total if total else 0.0


def sampled(request_id: str, share: float) -> bool:
    """Whether a request is in a `share` of requests, the same answer every time."""
    digest = hashlib.blake2b(request_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS < share * BUCKETS


class Mirror:
    def __init__(
        self,
        models: ShadowModels,
        events: ShadowEvents,
        settings: MirrorSettings,
    ) -> None:
        self._models = models
        self._events = events
        self._settings = settings
        self._limit = asyncio.Semaphore(settings.concurrency)
        self.state = MirrorState()

    def share(self, oldest_ms: int) -> float:
        """The share of requests to answer, given the age of the oldest in hand."""
        lag = max(0.0, time.time() - oldest_ms / 1000.0)
        self.state.lag_s = lag
        metrics.LAG_SECONDS.set(lag)
        if lag <= self._settings.max_lag_s:
            return 1.0
        halvings = math.ceil(math.log2(lag / self._settings.max_lag_s))
        return max(self._settings.min_share, 0.5**halvings)

    async def __call__(self, records: Sequence[Record]) -> None:
        if not records:
            return
        share = self.share(min(record.timestamp_ms for record in records))
        calls = []
        for record in records:
            request = record.value
            assert isinstance(request, events_pb2.ShadowRequest)
            if share < 1.0 and not sampled(request.request_id, share):
                self.state.skipped += len(request.shadow_versions)
                metrics.SKIPPED.labels(request.model).inc(len(request.shadow_versions))
                continue
            calls += [self._answer(request, version) for version in request.shadow_versions]
        events = await asyncio.gather(*calls)
        if events:
            await self._events.publish(events)

    async def _answer(
        self, request: events_pb2.ShadowRequest, version: str
    ) -> events_pb2.PredictionEvent:
        event = events_pb2.PredictionEvent(
            request_id=request.request_id,
            model=request.model,
            version=version,
            role=common_pb2.ROLE_SHADOW,
            variant="shadow",
            entity_key=request.entity_key,
        )
        event.time.CopyFrom(request.time)
        event.features.MergeFrom(request.features)
        row = common_pb2.Row()
        row.features.MergeFrom(request.features)
        async with self._limit:
            started = time.perf_counter()
            try:
                output = await self._models.predict(
                    request.model, version, request.request_id, row, self._settings.timeout_s
                )
            except ShadowCallFailed as failure:
                event.error = failure.code
                self.state.failed += 1
                metrics.ANSWERS.labels(request.model, version, failure.code).inc()
            else:
                event.output.CopyFrom(output)
                self.state.answered += 1
                metrics.ANSWERS.labels(request.model, version, "OK").inc()
            event.latency_us = int((time.perf_counter() - started) * 1_000_000)
        return event


class ShadowCallFailed(Exception):
    """A shadow version did not answer: `code` is the status name recorded as its error."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
