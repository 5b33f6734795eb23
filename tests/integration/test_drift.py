"""The drift service against the real broker and the real ClickHouse engine: seeded
streams through Kafka, the sink, online detection, windowed reports, alerts and the gRPC API."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
import pytest
from prometheus_client import REGISTRY

from driftloop.clickhouse.backend import EmbeddedBackend
from driftloop.clickhouse.client import ClickHouse
from driftloop.clickhouse.prediction_log import PredictionLog
from driftloop.drift.alerts import STATE_NAMES
from driftloop.drift.config import DriftSettings
from driftloop.drift.server import DriftService
from driftloop.kafka.producer import EventProducer
from driftloop.kafka.topics import TopicNames, ensure_topics
from driftloop.kit.errors import NotFound
from driftloop.kit.grpc_server import GrpcServer
from driftloop.kit.settings import GrpcServerSettings, KafkaSettings
from driftloop.models.training import TrainedModel
from driftloop.v1 import (
    common_pb2,
    drift_pb2,
    drift_pb2_grpc,
    events_pb2,
    registry_pb2,
)
from tests import drift_streams
from tests.conftest import unique_name
from tests.drift_streams import Stream
from tests.integration.stack import read_topic, until

MODEL = "risk"


class VersionsRegistry:
    """GetModelVersion over a dict: all the drift service asks the registry (the server kit
    answers UNIMPLEMENTED for the rest)."""

    def __init__(self) -> None:
        self.versions: dict[tuple[str, str], registry_pb2.ModelVersion] = {}

    async def GetModelVersion(
        self, request: registry_pb2.GetModelVersionRequest, context: Any
    ) -> registry_pb2.ModelVersion:
        record = self.versions.get((request.model.model, request.model.version))
        if record is None:
            raise NotFound(f"{request.model.model}:{request.model.version} is not registered")
        return record


@dataclass
class Drift:
    kafka: KafkaSettings
    service: DriftService
    stub: drift_pb2_grpc.DriftServiceStub
    producer: EventProducer
    names: TopicNames
    clickhouse: ClickHouse
    registry: VersionsRegistry

    def register(self, trained: TrainedModel, version: str) -> None:
        record = drift_streams.version_record(trained, MODEL, version)
        self.registry.versions[(MODEL, version)] = record

    async def send(self, stream: Stream, labels: bool = True) -> None:
        for event in stream.predictions:
            await self.producer.enqueue(self.names.predictions, event.request_id, event)
        if labels:
            await self.send_labels(stream.labels)
        await self.producer.flush()

    async def send_labels(self, labels: Sequence[events_pb2.LabelEvent]) -> None:
        for label in labels:
            await self.producer.enqueue(self.names.labels, label.request_id, label)
        await self.producer.flush()

    async def count(self, table: str) -> int:
        result = await self.clickhouse.query(
            f"SELECT count() FROM {self.clickhouse.table(table)} FINAL"
        )
        return int(result.scalar())

    async def logged(self, predictions: int, labels: int) -> None:
        async def done() -> bool:
            return (await self.count("predictions"), await self.count("labels")) == (
                predictions,
                labels,
            )

        await until(done, 90)

    async def alerts(self) -> list[events_pb2.DriftAlert]:
        response = await self.stub.ListAlerts(drift_pb2.ListAlertsRequest(model=MODEL), timeout=10)
        return list(response.alerts)


@pytest.fixture(scope="module")
def trained() -> TrainedModel:
    return drift_streams.train()


@asynccontextmanager
async def running(
    kafka_settings: KafkaSettings, clickhouse: ClickHouse, own: dict[str, Any]
) -> AsyncIterator[Drift]:
    """The drift service in-process on the test's topics and database, with a registry of
    its own, and a producer: stopped on the way out."""
    assert kafka_settings.bootstrap_servers is not None
    registry = VersionsRegistry()
    registry_server = GrpcServer("registry", GrpcServerSettings(host="127.0.0.1", port=0))
    registry_server.add_service(registry_pb2.DESCRIPTOR.services_by_name["ModelRegistry"], registry)
    registry_port = await registry_server.start()
    settings = DriftSettings(
        **{
            "host": "127.0.0.1",
            "port": 0,
            "registry_target": f"127.0.0.1:{registry_port}",
            "sink_batch": 5000,
            "evaluate_every_s": 3600,
            "evaluate_every_rows": 0,
            "window_last_n": 2000,
            # The tail of a test's stream reaches the detectors 2 s after its last batch.
            "online_reorder_idle_s": 2.0,
            **own,
        }
    )
    service = DriftService(settings, kafka_settings, kafka_settings.bootstrap_servers, clickhouse)
    port = await service.start()
    producer = EventProducer(kafka_settings, kafka_settings.bootstrap_servers)
    await producer.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Drift(
            kafka_settings,
            service,
            drift_pb2_grpc.DriftServiceStub(channel),
            producer,
            TopicNames(kafka_settings.topic_prefix),
            clickhouse,
            registry,
        )
    finally:
        await channel.close()
        await producer.stop()
        await service.stop(grace=1)
        await registry_server.stop()


@pytest.fixture
async def drift(
    kafka_settings: KafkaSettings, clickhouse: ClickHouse, request: pytest.FixtureRequest
) -> AsyncIterator[Drift]:
    # The parameter: the sink engine's name, or settings of the test's own.
    param = getattr(request, "param", "aiokafka")
    own: dict[str, Any] = {"sink_engine": param} if isinstance(param, str) else param
    async with running(kafka_settings, clickhouse, own) as drift:
        yield drift


async def test_a_stable_stream_of_100k_events_raises_no_alert(
    drift: Drift, trained: TrainedModel
) -> None:
    drift.register(trained, "1")
    stream = drift_streams.stream(
        trained, drift_streams.table(100_000, seed=41), model=MODEL, version="1"
    )
    await drift.send(stream, labels=False)
    await drift.send_labels(stream.labels[:20_000])
    await drift.logged(100_000, 20_000)

    async def observed() -> bool:  # the last second's events once the stream is quiet
        return drift.service.detection.events.get((MODEL, "1")) == 100_000

    await until(observed)
    assert await drift.alerts() == []
    report = await drift.service.evaluator.evaluate(MODEL, "1")
    assert report is not None and report.rows == 2000
    assert not (report.data_drift or report.prediction_drift or report.concept_drift)
    assert await drift.alerts() == []
    assert await drift.count("drift_metrics") > 80  # 4 tests x 21 streams, performance, share


async def test_a_half_sigma_shift_in_one_of_20_features_is_flagged_on_it_alone(
    drift: Drift, trained: TrainedModel
) -> None:
    drift.register(trained, "1")
    data = drift_streams.table(8000, seed=42, shift={"x7": 0.5}, shift_from=4000)
    await drift.send(drift_streams.stream(trained, data, model=MODEL, version="1"), labels=False)
    await drift.logged(8000, 0)

    async def alerted() -> bool:
        return bool(await drift.alerts())

    await until(alerted)
    (alert,) = await drift.alerts()
    assert alert.kind == events_pb2.DRIFT_KIND_DATA and alert.version == "1"
    assert [f.feature for f in alert.features] == ["x7"]
    assert alert.features[0].test == "cusum"
    # The same alert went to the drift-alerts topic.
    published = await read_topic(drift.kafka, drift.names.drift_alerts, 1)
    assert [events_pb2.DriftAlert.FromString(v) for v in published] == [alert]

    report = await drift.stub.GetDriftReport(
        drift_pb2.DriftReportRequest(
            model=common_pb2.ModelRef(model=MODEL, version="1"), last_n=3000
        ),
        timeout=30,
    )
    assert report.rows == 3000 and report.data_drift and not report.concept_drift
    drifted = {score.feature for score in report.features if score.drifted}
    assert drifted == {"x7"}
    assert report.root_causes[0].feature == "x7"
    assert report.drifted_share == pytest.approx(0.05)


async def test_a_new_category_at_10_percent_is_flagged_online_on_its_feature(
    drift: Drift, trained: TrainedModel
) -> None:
    drift.register(drift_streams.with_plan(trained), "1")
    data = drift_streams.table(4000, seed=44)
    stream = drift_streams.stream(trained, data, model=MODEL, version="1")
    plans = drift_streams.plans(4000, seed=44)
    # From event 2,000 on, 10% of the rows have a plan the baseline never saw.
    plans[2000:][np.random.default_rng(44).random(2000) < 0.1] = "gold"
    for event, plan in zip(stream.predictions, plans.tolist(), strict=True):
        event.features["plan"].category = plan
    await drift.send(stream, labels=False)
    await drift.logged(4000, 0)

    async def alerted() -> bool:
        return bool(await drift.alerts())

    await until(alerted)
    (alert,) = await drift.alerts()
    assert alert.kind == events_pb2.DRIFT_KIND_DATA
    assert [f.feature for f in alert.features] == ["plan:share"]
    (score,) = alert.features
    assert score.test == "cusum" and score.score > 0 and score.drifted
    # Within 250 events of the change (tests/unit/test_online_changes.py): the event's time.
    first = score.first_alarm.ToDatetime(dt.UTC)
    assert drift_streams.T0 + dt.timedelta(seconds=2000) <= first
    assert first < drift_streams.T0 + dt.timedelta(seconds=2250)


async def test_a_new_label_relation_is_concept_drift_once_labels_arrive(
    drift: Drift, trained: TrainedModel
) -> None:
    drift.register(trained, "1")
    data = drift_streams.table(6000, seed=43, flip_from=0)
    stream = drift_streams.stream(trained, data, model=MODEL, version="1")
    await drift.send(stream, labels=False)
    await drift.logged(6000, 0)
    before = await drift.service.evaluator.evaluate(MODEL, "1")
    assert before is not None and not before.concept_drift and not before.data_drift
    assert await drift.alerts() == []

    # The labels come later, some as JSON (producers in any language).
    for label in stream.labels[:1000]:
        document = {"request_id": label.request_id, "label": label.label, "source": "json"}
        await drift.producer.enqueue(
            drift.names.labels, label.request_id, json.dumps(document).encode()
        )
    await drift.send_labels(stream.labels[1000:])
    await drift.logged(6000, 6000)
    after = await drift.service.evaluator.evaluate(MODEL, "1")
    assert after is not None and after.labelled == 2000
    assert after.concept_drift and not after.data_drift and not after.prediction_drift
    kinds = {alert.kind for alert in await drift.alerts()}
    assert kinds == {events_pb2.DRIFT_KIND_CONCEPT}


@pytest.mark.parametrize(
    "drift",
    [{"alert_debounce_s": 0, "alert_quiet_events": 2000, "sink_batch": 1000}],
    indirect=True,
)
async def test_four_features_drifting_at_different_times_give_one_alert_naming_all_four(
    drift: Drift, trained: TrainedModel
) -> None:
    drift.register(trained, "1")
    # x1, x3, x5, x7 drift by 0.8 sigma from rows 1000, 2500, 4000, 5500; all back at 9000.
    shifts = {
        name: (first, 9000, 0.8)
        for name, first in zip(("x1", "x3", "x5", "x7"), (1000, 2500, 4000, 5500), strict=True)
    }
    data = drift_streams.staggered(16_000, 51, shifts)
    stream = drift_streams.stream(trained, data, model=MODEL, version="1")
    # Keyed by request id over three partitions: the detectors still see the stream in its
    # order (the reordering buffer), so the exact detection points of this seeded stream
    # (as the unit test finds them) are expected.
    await drift.send(stream, labels=False)

    async def closed() -> bool:
        alerts = await drift.alerts()
        return any(
            a.kind == events_pb2.DRIFT_KIND_DATA and a.state == events_pb2.ALERT_STATE_CLOSED
            for a in alerts
        )

    await until(closed, 120)
    # ListAlerts: each alert once, as its latest event.
    (data_alert,) = [a for a in await drift.alerts() if a.kind == events_pb2.DRIFT_KIND_DATA]
    assert data_alert.state == events_pb2.ALERT_STATE_CLOSED
    assert data_alert.severity == events_pb2.SEVERITY_WARNING
    first = {f.feature: f.first_alarm.ToDatetime(dt.UTC) for f in data_alert.features}
    t0 = drift_streams.T0
    # The detection points of tests/unit/test_alert_lifecycle.py (the same seeded stream).
    assert first == {
        "x1": t0 + dt.timedelta(seconds=1087),
        "x3": t0 + dt.timedelta(seconds=2568),
        "x5": t0 + dt.timedelta(seconds=4059),
        "x7": t0 + dt.timedelta(seconds=5530),
    }
    assert not any(f.drifted for f in data_alert.features)
    # The drift-alerts topic has every event of it: the open (x1 first), an update as other
    # streams joined, the close. The detectors take in what the reordering buffer releases,
    # which may span more than a sink batch when a partition lagged: two streams can join
    # in one update. The output moved with x1: a prediction alert, open and close.
    published = [
        events_pb2.DriftAlert.FromString(value)
        for value in await read_topic(
            drift.kafka, drift.names.drift_alerts, data_alert.revision + 1 + 2
        )
    ]
    events = [a for a in published if a.alert_id == data_alert.alert_id]
    order = ["x1", "x3", "x5", "x7"]
    named = [[f.feature for f in a.features] for a in events]
    assert [a.revision for a in events] == list(range(len(events)))
    assert [a.state for a in events] == [
        events_pb2.ALERT_STATE_OPEN,
        *[events_pb2.ALERT_STATE_UPDATED] * (len(events) - 2),
        events_pb2.ALERT_STATE_CLOSED,
    ]
    assert named[0][0] == "x1" and named[-2] == named[-1] == order
    # Each update names more streams, in the order their first alarms came.
    assert all(n == order[: len(n)] for n in named)
    assert all(len(a) < len(b) for a, b in itertools.pairwise(named[:-1]))
    assert all(f.drifted for f in events[-2].features)
    assert events[-1] == data_alert
    other = [a for a in published if a.alert_id != data_alert.alert_id]
    assert [(a.kind, a.state) for a in other] == [
        (events_pb2.DRIFT_KIND_PREDICTION, events_pb2.ALERT_STATE_OPEN),
        (events_pb2.DRIFT_KIND_PREDICTION, events_pb2.ALERT_STATE_CLOSED),
    ]
    # And ClickHouse has a row per event, the streams with their first alarms.
    rows = await drift.clickhouse.query(
        "SELECT toString(state), revision, features, "
        "arrayMap(t -> toUnixTimestamp64Micro(t), first_alarms), opened = "
        f"{{opened:DateTime64(6, 'UTC')}} FROM {drift.clickhouse.table('drift_alerts')} FINAL "
        "WHERE alert_id = {id:String} ORDER BY revision",
        {"id": data_alert.alert_id, "opened": data_alert.opened.ToDatetime(dt.UTC)},
    )
    assert [row[:2] for row in rows.rows] == [(STATE_NAMES[a.state], a.revision) for a in events]
    assert list(rows.rows[-1][2]) == ["x1", "x3", "x5", "x7"]
    assert list(rows.rows[-1][3]) == [int(t.timestamp() * 1e6) for t in first.values()]
    assert all(row[4] for row in rows.rows)


async def produce(kafka: KafkaSettings, events: Sequence[events_pb2.PredictionEvent]) -> None:
    assert kafka.bootstrap_servers is not None
    producer = EventProducer(kafka, kafka.bootstrap_servers)
    await producer.start()
    try:
        for event in events:
            await producer.enqueue(
                TopicNames(kafka.topic_prefix).predictions, event.request_id, event
            )
        await producer.flush()
    finally:
        await producer.stop()


async def test_the_same_stream_on_one_or_six_partitions_gives_the_same_alarms(
    kafka_bootstrap: str, clickhouse_backend: EmbeddedBackend, trained: TrainedModel
) -> None:
    # Three features shift at different points; keyed by request id, six partitions take
    # a share each and the sink reads them interleaved as fetches come.
    data = drift_streams.table(
        6000, seed=53, shift={"x2": 0.6, "x9": -0.6, "x14": 0.5}, shift_from=2500
    )
    stream = drift_streams.stream(trained, data, model=MODEL, version="1")
    seen = []
    for partitions in (1, 6):
        kafka = KafkaSettings(
            bootstrap_servers=kafka_bootstrap,
            topic_prefix=unique_name("test") + ".",
            partitions=partitions,
        )
        await ensure_topics(kafka, kafka_bootstrap)
        clickhouse = ClickHouse(clickhouse_backend, unique_name("test_"))
        await clickhouse.apply_schema()
        try:
            # The stream waits in the topic (a backlog, as after a restart): the consumer's
            # batches then come a partition or two at a time, far out of time order.
            await produce(kafka, stream.predictions)
            # A partition counts as idle only after 5 s without rows (not 2 s, the other
            # tests' setting): a slow ClickHouse insert on a loaded machine must not let
            # one partition's rows overtake another's.
            own = {"sink_batch": 1000, "online_reorder_idle_s": 5.0}
            async with running(kafka, clickhouse, own) as drift:
                drift.register(trained, "1")

                async def observed(drift: Drift = drift) -> bool:
                    return drift.service.detection.events.get((MODEL, "1")) == 6000

                await until(observed, 90)
                assert drift.service.detection.order.late == 0
                seen.append(
                    sorted(
                        (
                            alert.kind,
                            alert.severity,
                            # The streams by first alarm (an alert lists them in the
                            # order they joined it, and streams released together join
                            # together, strongest first).
                            sorted(
                                (f.first_alarm.ToMicroseconds(), f.feature, f.test)
                                for f in alert.features
                            ),
                        )
                        for alert in await drift.alerts()
                    )
                )
        finally:
            await clickhouse.command(f"DROP DATABASE IF EXISTS {clickhouse.database}")
    one, six = seen
    assert one == six
    data_alert = next(a for a in one if a[0] == events_pb2.DRIFT_KIND_DATA)
    assert {feature for _, feature, _ in data_alert[2]} == {"x2", "x9", "x14"}


@pytest.mark.parametrize("drift", [{"label_pending_per_partition": 100}], indirect=True)
async def test_pending_label_join_entries_stay_under_the_bound_with_labels_that_never_come(
    drift: Drift, trained: TrainedModel
) -> None:
    def evicted() -> float:
        sample = REGISTRY.get_sample_value(
            "driftloop_drift_label_join_evicted_total", {"reason": "capacity"}
        )
        return sample or 0.0

    before = evicted()
    drift.register(trained, "1")
    stream = drift_streams.stream(
        trained, drift_streams.table(6000, seed=48), model=MODEL, version="1"
    )
    await drift.send(stream, labels=False)

    async def observed() -> bool:
        return drift.service.detection.events.get((MODEL, "1")) == 6000

    await until(observed, 90)
    join = drift.service.join
    held = [join.pending_predictions(p) for p in range(drift.kafka.partitions)]
    assert held == [100] * drift.kafka.partitions  # ~2000 a partition came, 100 stay
    assert join.pending == 100 * drift.kafka.partitions
    assert join.evictions == 6000 - join.pending and evicted() - before == join.evictions
    assert REGISTRY.get_sample_value("driftloop_drift_labels_pending") == join.pending
    # ClickHouse stays the source of truth: labels of any age join there.
    await drift.send_labels(stream.labels[-2000:])
    await drift.logged(6000, 2000)
    report = await drift.service.evaluator.evaluate(MODEL, "1")
    assert report is not None and report.labelled == 2000
    assert join.pending_labels(0) <= 100


@pytest.mark.parametrize("drift", ["aiokafka", "faust"], indirect=True)
async def test_malformed_labels_go_to_dead_letter_and_the_rest_is_logged(
    drift: Drift, trained: TrainedModel
) -> None:
    drift.register(trained, "1")
    stream = drift_streams.stream(
        trained, drift_streams.table(100, seed=44), model=MODEL, version="1"
    )
    await drift.send(stream)
    for raw in (b"{not json", b'{"label": "1"}', b"\xff\x00garbage"):
        await drift.producer.publish(drift.names.labels, "bad", raw)
    await drift.logged(100, 100)

    async def dead_lettered() -> bool:
        return drift.service.consumer.stats.dead_letters == 3

    await until(dead_lettered)


@pytest.mark.parametrize("drift", ["aiokafka", "faust"], indirect=True)
async def test_the_sink_reports_its_lag_per_partition(
    drift: Drift, trained: TrainedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    group = f"{drift.kafka.topic_prefix}drift-sink"

    def lags() -> dict[tuple[str, str], float]:
        return {
            (sample.labels["topic"], sample.labels["partition"]): sample.value
            for family in REGISTRY.collect()
            if family.name == "driftloop_consumer_lag_records"
            for sample in family.samples
            if sample.labels["group"] == group
        }

    store = asyncio.Event()
    write_tables = PredictionLog.write_tables

    async def held(self: PredictionLog, *tables: Any) -> tuple[int, int]:
        await store.wait()  # ClickHouse hangs: the batch stays in hand
        return await write_tables(self, *tables)

    monkeypatch.setattr(PredictionLog, "write_tables", held)
    stream = drift_streams.stream(
        trained, drift_streams.table(300, seed=45), model=MODEL, version="1"
    )
    await drift.send(stream)

    async def in_hand() -> bool:
        return sum(lags().values()) > 0

    await until(in_hand)  # the records the store holds up are lag, not handled
    store.set()
    await drift.logged(300, 300)
    every_partition = {
        (topic, str(partition))
        for topic in (drift.names.predictions, drift.names.labels)
        for partition in range(drift.kafka.partitions)
    }

    async def caught_up() -> bool:
        return lags() == dict.fromkeys(every_partition, 0.0)

    await until(caught_up)


async def test_the_api_answers_with_precise_status_codes(
    drift: Drift, trained: TrainedModel
) -> None:
    drift.register(trained, "1")
    stub = drift.stub
    ref = common_pb2.ModelRef(model=MODEL, version="1")
    baseline = await stub.GetBaseline(drift_pb2.GetBaselineRequest(model=ref), timeout=10)
    assert [b.feature for b in baseline.numeric] == list(drift_streams.NAMES)
    assert len(baseline.numeric[0].edges) == 9 and baseline.holdout_metrics

    async def code_of(call: Awaitable[Any]) -> tuple[grpc.StatusCode, str]:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        return caught.value.code(), caught.value.details() or ""

    bad = common_pb2.ModelRef(model="no spaces", version="1")
    code, details = await code_of(
        stub.GetDriftReport(drift_pb2.DriftReportRequest(model=bad), timeout=10)
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "model.model" in details
    missing = common_pb2.ModelRef(model=MODEL, version="9")
    code, _ = await code_of(
        stub.GetDriftReport(drift_pb2.DriftReportRequest(model=missing), timeout=10)
    )
    assert code == grpc.StatusCode.NOT_FOUND
    backwards = common_pb2.TimeWindow()
    backwards.start.FromDatetime(dt.datetime(2026, 2, 1, tzinfo=dt.UTC))
    backwards.end.FromDatetime(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    code, details = await code_of(
        stub.GetDriftReport(
            drift_pb2.DriftReportRequest(model=ref, time_window=backwards), timeout=10
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "time_window" in details
    code, details = await code_of(
        stub.AnalyzeCanary(
            drift_pb2.CanaryAnalysisRequest(model=MODEL, stable_version="1", candidate_version="1"),
            timeout=10,
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "candidate_version" in details
    # The shared name rules (driftloop.kit.names): a version ref is a number or an alias, a
    # canary compares version numbers.
    padded = common_pb2.ModelRef(model=MODEL, version="01")
    code, details = await code_of(
        stub.GetDriftReport(drift_pb2.DriftReportRequest(model=padded), timeout=10)
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "model.version" in details
    code, details = await code_of(
        stub.AnalyzeCanary(
            drift_pb2.CanaryAnalysisRequest(
                model=MODEL, stable_version="1", candidate_version="champion"
            ),
            timeout=10,
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "candidate_version" in details
    code, _ = await code_of(stub.ListAlerts(drift_pb2.ListAlertsRequest(model=MODEL, limit=5000)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    # A time window over no traffic is an empty report, not an error.
    empty = common_pb2.TimeWindow()
    empty.start.FromDatetime(dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
    empty.end.FromDatetime(dt.datetime(2020, 1, 2, tzinfo=dt.UTC))
    report = await stub.GetDriftReport(
        drift_pb2.DriftReportRequest(model=ref, time_window=empty), timeout=10
    )
    assert report.rows == 0 and not report.data_drift and not report.features


async def test_canary_analysis_fails_a_candidate_with_worse_accuracy(
    drift: Drift, trained: TrainedModel
) -> None:
    drift.register(trained, "1")
    stable = drift_streams.stream(
        trained, drift_streams.table(3000, seed=45), model=MODEL, version="1", prefix="s"
    )
    # The candidate serves the same traffic, but its answers are wrong a third more often.
    candidate = drift_streams.stream(
        trained, drift_streams.table(3000, seed=46), model=MODEL, version="2", prefix="c"
    )
    for event in candidate.predictions[::3]:
        event.output.label = "1" if event.output.label == "0" else "0"
    await drift.send(stable)
    await drift.send(candidate)
    await drift.logged(6000, 6000)
    window = common_pb2.TimeWindow()
    window.start.FromDatetime(drift_streams.T0)
    window.end.FromDatetime(drift_streams.T0 + dt.timedelta(days=1))
    result = await drift.stub.AnalyzeCanary(
        drift_pb2.CanaryAnalysisRequest(
            model=MODEL, stable_version="1", candidate_version="2", window=window
        ),
        timeout=30,
    )
    assert result.verdict == drift_pb2.VERDICT_FAIL
    assert result.stable.requests == result.candidate.requests == 3000
    assert result.stable.labelled == 3000
    assert result.candidate.accuracy < result.stable.accuracy - 0.1
    assert any("quality" in reason for reason in result.reasons)
    assert not result.evidence_sufficient and result.quality_difference_high < -0.1
    # The other way round, the better version as the candidate: evidence enough to pass.
    better = await drift.stub.AnalyzeCanary(
        drift_pb2.CanaryAnalysisRequest(
            model=MODEL, stable_version="2", candidate_version="1", window=window
        ),
        timeout=30,
    )
    assert better.verdict == drift_pb2.VERDICT_PASS and better.evidence_sufficient
    assert 0.1 < better.quality_difference_low < better.quality_difference_high
    # A candidate without traffic in the window (version 3 served nothing).
    same = await drift.stub.AnalyzeCanary(
        drift_pb2.CanaryAnalysisRequest(
            model=MODEL, stable_version="1", candidate_version="3", window=window
        ),
        timeout=30,
    )
    assert same.verdict == drift_pb2.VERDICT_INCONCLUSIVE


async def test_the_periodic_round_stores_last_n_and_fixed_time_windows(
    drift: Drift, trained: TrainedModel
) -> None:
    drift.register(trained, "1")
    # Inside the last complete hour, so that the fixed time window holds every row.
    hour = drift.service.evaluator.last_time_window(dt.datetime.now(dt.UTC))
    assert hour.start is not None
    recent = hour.start + dt.timedelta(minutes=30)
    data = drift_streams.table(1000, seed=47, shift={"x4": 1.0})
    await drift.send(
        drift_streams.stream(trained, data, model=MODEL, version="1", start=recent),
        labels=False,
    )
    await drift.logged(1000, 0)
    assert await drift.service.evaluator.evaluate_active() == 1
    for kind in ("last_n", "time"):
        result = await drift.clickhouse.query(
            f"SELECT stream, value, rows FROM {drift.clickhouse.table('drift_metrics')} FINAL "
            "WHERE window_kind = {kind:String} AND test = 'psi' AND drifted = 1",
            {"kind": kind},
        )
        assert [row[0] for row in result.rows] == ["x4"] and result.rows[0][1] > 0.2
        assert result.rows[0][2] == 1000
    kinds = {alert.kind for alert in await drift.alerts()}
    assert events_pb2.DRIFT_KIND_DATA in kinds
    causes = await drift.clickhouse.query(
        f"SELECT feature, rank, feature_drifted FROM {drift.clickhouse.table('drift_root_causes')} "
        "WHERE window_kind = 'time' ORDER BY rank"
    )
    assert len(causes.rows) == 20 and causes.rows[0][:3] == ("x4", 1, 1)


async def test_one_replica_at_a_time_runs_the_periodic_evaluation(
    drift: Drift, kafka_settings: KafkaSettings, clickhouse: ClickHouse
) -> None:
    assert kafka_settings.bootstrap_servers is not None
    settings = DriftSettings(host="127.0.0.1", port=0, registry_target="127.0.0.1:1")
    second = DriftService(settings, kafka_settings, kafka_settings.bootstrap_servers, clickhouse)
    await second.start()
    try:
        topic = drift.names.predictions

        def owned(service: DriftService) -> int:
            return sum(service.consumer.owns(topic, p) for p in range(kafka_settings.partitions))

        async def split() -> bool:
            # Both hold partitions (the group rebalanced), and one of them holds partition 0.
            both = owned(drift.service) > 0 and owned(second) > 0
            return both and drift.service.evaluates() != second.evaluates()

        await until(split, 60)
    finally:
        await second.stop(grace=1)

    async def back_to_one() -> bool:
        return drift.service.evaluates()

    await until(back_to_one, 60)  # the group gives partition 0 back to the survivor


async def test_a_restarted_drift_service_takes_up_the_alert_an_earlier_run_left_open(
    kafka_settings: KafkaSettings, clickhouse: ClickHouse
) -> None:
    left = events_pb2.DriftAlert(
        alert_id="left-open",
        kind=events_pb2.DRIFT_KIND_DATA,
        model=MODEL,
        version="1",
        severity=events_pb2.SEVERITY_WARNING,
        state=events_pb2.ALERT_STATE_UPDATED,
        revision=1,
    )
    left.time.FromDatetime(dt.datetime.now(dt.UTC))
    left.opened.CopyFrom(left.time)
    score = left.features.add(feature="x1", test="cusum", score=12.0, drifted=True)
    score.first_alarm.CopyFrom(left.time)
    score.last_alarm.CopyFrom(left.time)
    async with running(kafka_settings, clickhouse, {}) as drift:
        assert drift.service.alerts.open_alert(MODEL, "1", "data") is None
        await drift.service.store.write_alert(left)
    async with running(kafka_settings, clickhouse, {}) as drift:
        # The next alarm of that kind updates "left-open" (revision 2), never opens another.
        assert drift.service.alerts.open_alert(MODEL, "1", "data") == "left-open"
        listed = await drift.alerts()
        assert [(a.alert_id, a.state) for a in listed] == [
            ("left-open", events_pb2.ALERT_STATE_UPDATED)
        ]
