"""Events for tests, built the same way everywhere."""

from __future__ import annotations

import datetime as dt

from driftloop.v1 import common_pb2, events_pb2

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def prediction(n: int, model: str = "churn", version: str = "1") -> events_pb2.PredictionEvent:
    event = events_pb2.PredictionEvent(
        request_id=f"req-{n}",
        model=model,
        version=version,
        role=common_pb2.ROLE_LIVE,
        variant="stable",
        output=common_pb2.Output(kind=common_pb2.OUTPUT_KIND_BINARY, value=0.25, label="0"),
        latency_us=150,
    )
    event.time.FromDatetime(T0 + dt.timedelta(seconds=n))
    event.features["age"].number = 30.0 + n
    event.features["plan"].category = "pro" if n % 2 else "free"
    return event
