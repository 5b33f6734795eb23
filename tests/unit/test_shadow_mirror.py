"""The shadow mirror's core with in-memory models and sink: answers, failures, sampling."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection, Sequence

from driftloop.kafka.consumer import Record
from driftloop.shadow.mirror import Mirror, MirrorSettings, ShadowCallFailed, sampled
from driftloop.v1 import common_pb2, events_pb2


class Models:
    def __init__(self, fail: Collection[str] = (), delay_s: float = 0.0) -> None:
        self.fail = fail
        self.delay_s = delay_s
        self.calls: list[tuple[str, str]] = []
        self.in_flight = 0
        self.most_in_flight = 0

    async def predict(
        self, model: str, version: str, request_id: str, features: common_pb2.Row, timeout_s: float
    ) -> common_pb2.Output:
        self.calls.append((request_id, version))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay_s)
            if request_id in self.fail:
                raise ShadowCallFailed("DEADLINE_EXCEEDED", "too slow")
            return common_pb2.Output(
                kind=common_pb2.OUTPUT_KIND_BINARY, value=features.features["x"].number
            )
        finally:
            self.in_flight -= 1


class Sink:
    def __init__(self) -> None:
        self.events: list[events_pb2.PredictionEvent] = []

    async def publish(self, events: Sequence[events_pb2.PredictionEvent]) -> None:
        self.events.extend(events)


def request(n: int, versions: Sequence[str] = ("2",), age_s: float = 0.0) -> Record:
    message = events_pb2.ShadowRequest(
        request_id=f"r{n}",
        model="churn",
        entity_key=f"k{n}",
        live=common_pb2.ModelRef(model="churn", version="1"),
        shadow_versions=list(versions),
    )
    message.time.FromSeconds(1_700_000_000 + n)
    message.features["x"].number = float(n)
    stamp = int((time.time() - age_s) * 1000)
    return Record("shadow-requests", 0, n, message.request_id.encode(), stamp, message)


async def test_each_shadow_version_answers_with_the_live_requests_identity() -> None:
    models, sink = Models(fail={"r3"}), Sink()
    mirror = Mirror(models, sink, MirrorSettings())
    await mirror([request(n, ("2", "3")) for n in range(5)])
    assert len(sink.events) == 10
    for event in sink.events:
        n = int(event.request_id[1:])
        assert event.role == common_pb2.ROLE_SHADOW and event.variant == "shadow"
        assert event.time.seconds == 1_700_000_000 + n  # the live request's time: idempotent
        assert event.entity_key == f"k{n}" and event.features["x"].number == n
        if n == 3:
            assert event.error == "DEADLINE_EXCEEDED" and not event.HasField("output")
        else:
            assert event.error == "" and event.output.value == n
    assert (mirror.state.answered, mirror.state.failed, mirror.state.skipped) == (8, 2, 0)


async def test_behind_by_more_than_the_lag_it_samples_and_counts_what_it_skipped() -> None:
    models, sink = Models(), Sink()
    mirror = Mirror(models, sink, MirrorSettings(max_lag_s=30.0, min_share=0.05))
    records = [request(n, age_s=100.0) for n in range(2000)]
    await mirror(records)
    share = len(sink.events) / len(records)
    assert 0.2 < share < 0.3  # 30 s of allowed lag, 100 s behind: 0.3 down to a quarter
    assert mirror.state.skipped == len(records) - len(sink.events)
    assert mirror.state.lag_s >= 100.0
    assert abs(mirror.state.skipped_share - (1 - share)) < 1e-9
    # The choice is the request's, not the moment's: a re-delivery answers the same ones.
    again = Sink()
    await Mirror(Models(), again, MirrorSettings(max_lag_s=30.0, min_share=0.05))(records)
    assert [e.request_id for e in again.events] == [e.request_id for e in sink.events]


async def test_a_share_never_falls_below_the_floor_and_calls_are_bounded() -> None:
    models, sink = Models(delay_s=0.01), Sink()
    mirror = Mirror(models, sink, MirrorSettings(max_lag_s=1.0, min_share=0.1, concurrency=4))
    await mirror([request(n, age_s=3600.0) for n in range(1000)])
    assert 0.07 < len(sink.events) / 1000 < 0.13  # 1/4096 lifted to the floor
    assert models.most_in_flight <= 4


def test_sampling_is_stable_and_proportional() -> None:
    ids = [f"req-{n}" for n in range(20_000)]
    half = sum(sampled(i, 0.5) for i in ids) / len(ids)
    assert 0.48 < half < 0.52
    assert all(sampled(i, 1.0) for i in ids[:100])
    assert [sampled(i, 0.3) for i in ids[:50]] == [sampled(i, 0.3) for i in ids[:50]]
