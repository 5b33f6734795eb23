"""Every metric the alerting rules read is on the live /metrics endpoints of the five
services in the standalone composition, after a little traffic (tests/live_metrics.py), and
the traffic's labelled series are there."""

from __future__ import annotations

import asyncio
import time

from driftloop.cli.up import SERVICES
from tests.live_metrics import LiveMetrics, live_metrics
from tests.metric_names import rule_metrics
from tests.retrain_data import MODEL

__all__ = ["live_metrics"]  # the fixture


async def test_every_metric_the_rules_read_is_on_the_live_endpoints(
    live_metrics: LiveMetrics,
) -> None:
    pages = await live_metrics.pages()
    assert set(pages) == set(SERVICES) and all(pages.values())
    assert await live_metrics.missing(rule_metrics()) == []
    # The traffic's labelled series, once the drift sink has had the records.
    sink = {"group": "drift-sink", "topic": f"{live_metrics.kafka.topic_prefix}labels"}
    deadline = time.monotonic() + 60
    while not await live_metrics.has("driftloop_dead_letters_total", stage="decode", **sink):
        assert time.monotonic() < deadline, "the undecodable label was not dead-lettered"
        await asyncio.sleep(0.2)
    group = f"{live_metrics.kafka.topic_prefix}drift-sink"
    for topic in ("predictions", "labels"):
        assert await live_metrics.has(
            "driftloop_consumer_lag_records",
            group=group,
            topic=f"{live_metrics.kafka.topic_prefix}{topic}",
        )
    assert await live_metrics.has(
        "grpc_server_handled_total",
        grpc_type="unary",
        grpc_service="driftloop.v1.Gateway",
        grpc_method="PredictBatch",
        grpc_code="OK",
    )
    assert await live_metrics.has("driftloop_gateway_requests_total", model=MODEL)
    assert await live_metrics.has("driftloop_inference_rows_total", model=MODEL)
    assert await live_metrics.has("driftloop_drift_sink_records_total", kind="label")
