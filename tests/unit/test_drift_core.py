"""The drift service's core without I/O: reports, online monitors, the label join, alerts
and the canary verdict, on seeded streams with known drift."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pytest

from driftloop.clickhouse.prediction_log import prediction_table
from driftloop.drift.alerts import Alerts
from driftloop.drift.baselines import VersionInfo
from driftloop.drift.canary import CanaryLimits, VersionTraffic, judge
from driftloop.drift.detection import OnlineDetection, feature_matrix
from driftloop.drift.labels import LabelJoin, Served, Truth
from driftloop.drift.online import ERROR, OnlineAlarm, VersionMonitor
from driftloop.drift.ordering import ReorderBuffer
from driftloop.drift.report import Report, Thresholds, build_report
from driftloop.drift.windows import WindowData, summarize
from driftloop.models.baseline import Baseline, numeric_baseline
from driftloop.models.table import Table
from driftloop.models.training import TrainedModel
from driftloop.stats import bin_counts, ks_counts
from driftloop.v1 import events_pb2
from tests import drift_streams

START = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
# The stated detection budget for a 0.5-sigma shift on one of 20 features (the median
# delay of the default detector is ~100 events; see docs/benchmarks.md).
HALF_SIGMA_WITHIN = 300


@pytest.fixture(scope="module")
def trained() -> TrainedModel:
    return drift_streams.train()


def window(trained: TrainedModel, data: Table, labelled: bool = True) -> WindowData:
    return drift_streams.window_data(trained, data, labelled=labelled, start=START)


def report(trained: TrainedModel, data: Table, labelled: bool = True) -> Report:
    data_window = window(trained, data, labelled)
    return build_report("m", "1", "last_n", "binary", trained.baseline, data_window, Thresholds())


def test_a_stable_window_has_no_drift(trained: TrainedModel) -> None:
    result = report(trained, drift_streams.table(10_000, seed=11))
    assert (result.data_drift, result.prediction_drift, result.concept_drift) == (
        False,
        False,
        False,
    )
    assert result.rows == result.labelled == 10_000
    assert len(result.features) == 20
    assert result.performance["accuracy"] == pytest.approx(
        result.performance["holdout_accuracy"], abs=0.03
    )


def test_a_version_without_a_baseline_says_so_and_scores_nothing(trained: TrainedModel) -> None:
    """Registered without reference data: the window is counted, nothing is compared."""
    data = drift_streams.table(2_000, seed=12)
    result = build_report(
        "m", "1", "last_n", "binary", Baseline(), window(trained, data), Thresholds()
    )
    assert result.baseline_missing and result.rows == 2_000
    assert not result.features and result.prediction is None and not result.data_drift
    assert not report(trained, data).baseline_missing


def test_a_half_sigma_shift_drifts_that_feature_only(trained: TrainedModel) -> None:
    data = drift_streams.table(10_000, seed=12, shift={"x7": 0.5})
    result = report(trained, data)
    assert [f.stream for f in result.features if f.drifted] == ["x7"]
    x7 = next(f for f in result.features if f.stream == "x7")
    assert x7.psi > 0.2 and x7.p_value < 1e-6
    assert result.data_drift and not result.concept_drift
    assert result.drifted_share == pytest.approx(1 / 20)
    assert result.root_causes[0].feature == "x7"


def test_a_changed_label_relation_is_concept_drift_not_data_drift(trained: TrainedModel) -> None:
    data = drift_streams.table(10_000, seed=13, flip_from=0)
    result = report(trained, data)
    assert result.concept_drift
    assert not result.data_drift and not result.prediction_drift
    assert result.performance["accuracy"] < 0.4
    unlabelled = report(trained, data, labelled=False)
    assert not unlabelled.concept_drift and unlabelled.performance == {}


def test_shifting_the_label_driver_links_the_feature_to_the_performance_drop(
    trained: TrainedModel,
) -> None:
    # Both move by one sigma, the labels do not follow: the model leans on x0 (errors
    # rise), while x5 carries no weight (its link is sampling noise).
    data = drift_streams.table(10_000, seed=14, shift={"x0": 1.0, "x5": 1.0})
    result = report(trained, data)
    assert {f.stream for f in result.features if f.drifted} == {"x0", "x5"}
    assert result.concept_drift
    links = {c.feature: c.performance_link for c in result.root_causes}
    assert result.root_causes[0].feature == "x0" and links["x0"] > 0.02
    assert links["x0"] > 2 * abs(links["x5"])


def numbers(data: Table, name: str) -> npt.NDArray[np.float64]:
    return np.asarray(data.columns[name], dtype=np.float64)


def feed(
    monitor: VersionMonitor, data: Table, trained: TrainedModel, batch: int = 1000
) -> list[OnlineAlarm]:
    features = np.column_stack([numbers(data, name) for name in monitor.features])
    outputs = trained.model.predict_table(data)
    alarms: list[OnlineAlarm] = []
    for start in range(0, data.rows, batch):
        alarms += monitor.observe(features[start : start + batch], outputs[start : start + batch])
    return alarms


def test_online_monitors_stay_quiet_on_100k_stable_events(trained: TrainedModel) -> None:
    monitor = VersionMonitor(trained.baseline, "binary", 10_000_000)
    assert len(monitor.streams) == 21
    assert feed(monitor, drift_streams.table(100_000, seed=21), trained) == []


def test_a_half_sigma_shift_is_caught_online_on_that_feature(trained: TrainedModel) -> None:
    monitor = VersionMonitor(trained.baseline, "binary", 10_000_000)
    data = drift_streams.table(6000, seed=22, shift={"x7": 0.5}, shift_from=3000)
    alarms = feed(monitor, data, trained, batch=500)
    assert alarms, "no alarm"
    first = alarms[0]
    assert {a.stream for a in alarms} == {"x7"} and first.kind == "data"
    assert 3000 <= first.index < 3000 + HALF_SIGMA_WITHIN
    assert first.start >= 2900  # the estimated change point is close to the true one


def test_errors_rising_after_labels_is_an_online_concept_alarm(trained: TrainedModel) -> None:
    monitor = VersionMonitor(trained.baseline, "binary", 10_000_000)
    accuracy = trained.baseline.holdout_metrics["accuracy"]
    rng = np.random.default_rng(5)
    stable = (rng.random(20_000) > accuracy).astype(np.float64)
    assert monitor.observe_errors(stable) == []
    worse = (rng.random(2000) > accuracy - 0.15).astype(np.float64)
    alarms = monitor.observe_errors(worse)
    assert alarms and alarms[0].stream == ERROR and alarms[0].kind == "concept"


def test_labels_join_in_either_order_within_the_horizon() -> None:
    now = [0.0]
    join = LabelJoin(horizon_s=60, per_partition=10, clock=lambda: now[0])
    served = Served("m", "1", "binary", "1", 0.9)
    assert join.prediction("a", served) is None
    outcome = join.label("a", Truth("0", 0.0, True))
    assert outcome is not None and outcome.error == 1.0
    assert join.label("b", Truth("", 1.0, False)) is None  # the label came first, as a number
    outcome = join.prediction("b", served)
    assert outcome is not None and outcome.error == 0.0
    assert join.prediction("c", served) is None
    now[0] = 61.0
    assert join.label("d", Truth("1", 0.0, True)) is None  # expires "c"
    assert join.label("c", Truth("1", 0.0, True)) is None
    assert join.expired == 1


def test_the_label_join_holds_at_most_its_bound_per_partition_with_labels_that_never_come() -> None:
    evicted: list[tuple[str, int]] = []
    join = LabelJoin(
        horizon_s=86_400,
        per_partition=100,
        clock=lambda: 0.0,
        evicted=lambda reason, entries: evicted.append((reason, entries)),
    )
    served = Served("m", "1", "binary", "1", 0.9)
    for i in range(10_000):
        assert join.prediction(f"r{i}", served, partition=i % 3) is None
        assert join.pending_predictions(i % 3) <= 100
    assert [join.pending_predictions(p) for p in range(3)] == [100, 100, 100]
    assert join.pending == 300 and join.evictions == 10_000 - 300
    assert sum(n for reason, n in evicted if reason == "capacity") == 9_700
    # The newest of each partition still join (r9999 is in partition 0), the oldest do not.
    assert join.label("r9999", Truth("0", 0.0, True), partition=0) is not None
    assert join.label("r0", Truth("0", 0.0, True), partition=0) is None
    # Labels waiting for predictions that never come are bounded the same way.
    for i in range(500):
        join.label(f"orphan{i}", Truth("1", 0.0, True), partition=1)
    assert join.pending_labels(1) == 100
    # A label on another partition than its prediction (another partitioner) still joins.
    assert join.label("r9998", Truth("1", 0.0, True), partition=0) is not None


def test_the_label_join_expires_idle_partitions_on_request() -> None:
    now = [0.0]
    join = LabelJoin(horizon_s=60, per_partition=100, clock=lambda: now[0])
    join.prediction("a", Served("m", "1", "binary", "1", 0.9), partition=4)
    now[0] = 61.0
    assert join.expire() == 1 and join.pending == 0 and join.expired == 1


def test_a_batch_of_predictions_joins_as_one_at_a_time_would() -> None:
    """LabelJoin.predictions against .prediction in a loop, on a seeded stream of batches
    (partitions in runs or interleaved, ids repeated or waiting already, labels before and
    after their predictions, expiry and the bound): the same outcomes, then the same
    entries waiting (labels for every id meet the same predictions)."""
    rng = np.random.default_rng(17)
    now = [0.0]
    counted: list[list[tuple[str, int]]] = [[], []]

    def join(log: list[tuple[str, int]]) -> LabelJoin:
        def evicted(reason: str, n: int) -> None:
            log.append((reason, n))

        return LabelJoin(horizon_s=50, per_partition=8, clock=lambda: now[0], evicted=evicted)

    batch, single = (join(log) for log in counted)

    def truth(i: int) -> Truth:
        return Truth(str(i % 2), 0.0, True)

    for _ in range(80):
        now[0] += float(rng.choice([0, 1, 20]))
        if rng.random() < 0.4:
            for i in rng.integers(0, 300, size=int(rng.integers(1, 20))).tolist():
                partition = int(rng.integers(0, 3))
                assert batch.label(f"r{i}", truth(i), partition) == single.label(
                    f"r{i}", truth(i), partition
                )
            continue
        size = int(rng.integers(1, 60))
        ids = [f"r{i}" for i in rng.integers(0, 300, size=size).tolist()]
        if rng.random() < 0.7:  # mostly distinct ids
            ids = list(dict.fromkeys(ids))
        partitions = rng.integers(0, 3, size=len(ids)).tolist()
        if rng.random() < 0.5:
            partitions.sort()  # a consumer batch: partition by partition
        rows = [("m", "1", "binary", "1", 0.9, int(key[1:])) for key in ids]
        want = [
            (key, outcome)
            for key, row, partition in zip(ids, rows, partitions, strict=True)
            if (outcome := single.prediction(key, row, partition)) is not None
        ]
        got = batch.predictions(ids, rows, partitions)
        assert sorted(got, key=repr) == sorted(want, key=repr)
    assert (batch.pending, batch.expired, batch.evictions) == (
        single.pending,
        single.expired,
        single.evictions,
    )
    assert [batch.pending_predictions(p) for p in range(3)] == [
        single.pending_predictions(p) for p in range(3)
    ]
    for i in range(300):
        assert batch.label(f"r{i}", truth(i), 0) == single.label(f"r{i}", truth(i), 0)
    total = [
        {reason: sum(n for r, n in log if r == reason) for reason, _ in log} for log in counted
    ]
    assert total[0] == total[1]


async def test_one_alert_is_open_per_model_version_and_kind(trained: TrainedModel) -> None:
    published: list[events_pb2.DriftAlert] = []

    async def publish(alert: events_pb2.DriftAlert) -> None:
        published.append(alert)

    now = [0.0]
    alerts = Alerts(publish, debounce_s=300, clock=lambda: now[0])
    shifted = report(trained, drift_streams.table(5000, seed=31, shift={"x3": 0.8}))
    first = await alerts.from_report(shifted)
    assert [a.kind for a in first] == [events_pb2.DRIFT_KIND_DATA]
    assert first[0].features[0].feature == "x3" and first[0].window_rows == 5000
    assert first[0].state == events_pb2.ALERT_STATE_OPEN
    # The same evidence again is no news: the open alert takes it in, nothing is published,
    # however long after (the window still shows the drift: it stays open).
    assert await alerts.from_report(shifted) == [] and alerts.absorbed == 1
    now[0] = 301.0
    assert await alerts.from_report(shifted) == []
    # Another version has alerts of its own.
    other = dataclasses.replace(shifted, version="2")
    assert [a.version for a in await alerts.from_report(other)] == ["2"]
    assert len(published) == 2


def variant(version: str, accuracy: float, labelled: int = 2000) -> VersionTraffic:
    """5,000 requests over 100 s, the first `labelled` with a label, `accuracy` of them
    right (spread evenly over time)."""
    times = np.linspace(0.0, 100.0, 5000)
    k, per_mille = np.arange(labelled), round(accuracy * 1000)
    right = (k + 1) * per_mille // 1000 - k * per_mille // 1000  # evenly spread, exact
    return VersionTraffic(
        version=version,
        times=times,
        failed=np.zeros(5000, dtype=bool),
        latency_ms=np.full(5000, 2.0),
        outputs=np.random.default_rng(1).random(5000),
        label_times=times[:labelled],
        quality=right.astype(np.float64),
    )


def test_the_canary_fails_on_a_significant_accuracy_drop_only() -> None:
    limits = CanaryLimits()
    assert judge(variant("1", 0.80), variant("2", 0.795), limits).verdict == "pass"
    failed = judge(variant("1", 0.80), variant("2", 0.70), limits)
    assert failed.verdict == "fail" and "quality" in failed.reasons[0]
    few = judge(variant("1", 0.80), variant("2", 0.70, labelled=10), limits)
    assert few.verdict == "pass"  # ten labels say nothing yet
    quiet = VersionTraffic(
        "2", times=np.zeros(3), failed=np.zeros(3, dtype=bool), latency_ms=np.ones(3)
    )
    assert judge(variant("1", 0.8), quiet, limits).verdict == "inconclusive"


def test_the_feature_matrix_reads_the_logged_map_column_by_name(trained: TrainedModel) -> None:
    data = drift_streams.table(50, seed=61)
    stream = drift_streams.stream(trained, data, model="m", version="1")
    del stream.predictions[3].features["x2"]  # a missing feature is NaN
    logged = prediction_table(stream.predictions).column("numbers").combine_chunks()
    cases = ((logged.take(np.asarray([1, 3, 5])), [1, 3, 5]), (logged.slice(2, 4), [2, 3, 4, 5]))
    for part, rows in cases:
        matrix = feature_matrix(part, ["x0", "x2", "nope"])
        expected = np.column_stack([numbers(data, "x0")[rows], numbers(data, "x2")[rows]])
        if 3 in rows:
            expected[rows.index(3), 1] = np.nan
        np.testing.assert_array_equal(matrix[:, :2], expected)
        assert np.isnan(matrix[:, 2]).all()


def test_window_counts_in_memory_equal_the_bin_and_ks_counts() -> None:
    """summarize's one-sort counts against the two counting functions, with ties at the
    edges and sample points, infinities, NaN, and a stream with no finite value."""
    rng = np.random.default_rng(8)
    reference = np.round(rng.normal(size=3000), 1)
    item = numeric_baseline("x", reference, rng, sample_size=200)
    current = np.concatenate(
        [np.round(rng.normal(0.3, size=5000), 1), [np.inf, -np.inf, np.nan], item.edges]
    )
    empty = np.array([np.nan, np.inf, -np.inf])
    baseline = Baseline(numeric=[item, dataclasses.replace(item, feature="y")])
    rows = current.size
    data = WindowData(
        start=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        end=dt.datetime(2026, 1, 1, 1, tzinfo=dt.UTC),
        numbers={"x": current, "y": np.resize(empty, rows)},
        categories={},
        output_value=np.zeros(rows),
        output_label=np.full(rows, "", dtype=object),
        labelled=np.zeros(rows, dtype=bool),
        truth_label=np.full(rows, "", dtype=object),
        truth_value=np.zeros(rows),
        truth_is_label=np.zeros(rows, dtype=bool),
    )
    counted = summarize(baseline, data).numbers
    finite = current[np.isfinite(current)]
    below, at_or_below = ks_counts(item.sample, finite)
    assert np.array_equal(counted["x"].bins, bin_counts(finite, item.edges))
    assert np.array_equal(counted["x"].below, below)
    assert np.array_equal(counted["x"].at_or_below, at_or_below)
    assert counted["x"].size == finite.size
    assert not counted["y"].bins.any() and counted["y"].bins.size == len(item.edges) + 1
    assert not counted["y"].below.any() and not counted["y"].at_or_below.any()


async def test_labels_reach_the_error_stream_while_the_reordering_buffer_holds_predictions(
    trained: TrainedModel,
) -> None:
    """A batch whose predictions the reordering buffer holds back releases no row; the
    labels of a later batch with no prediction at all still reach the error detector."""

    class Baselines:
        async def get(self, model: str, version: str) -> VersionInfo:
            return VersionInfo(model, version, "binary", trained.baseline)

    async def publish(alert: events_pb2.DriftAlert) -> None:
        return None

    async def record(model: str, version: str, alarm: OnlineAlarm) -> None:
        return None

    detection = OnlineDetection(
        Baselines(),
        LabelJoin(horizon_s=3600, per_partition=10_000),
        Alerts(publish, debounce_s=0, quiet_events=100),
        false_alarm_events=100_000,
        record_alarm=record,
        order=ReorderBuffer(window_us=3_600_000_000, max_events=100_000, idle_s=3600),
    )
    stream = drift_streams.stream(trained, drift_streams.table(50, seed=90), model="m", version="1")
    await detection.observe(prediction_table(stream.predictions), [], [0] * 50, [])
    assert detection.events.get(("m", "1"), 0) == 0  # held back: no row released
    empty = prediction_table([])
    await detection.observe(empty, stream.labels[:30], [], [0] * 30)
    assert detection.outcomes[("m", "1")] == 30


def test_the_feature_matrix_is_the_same_read_at_fixed_places_or_by_name() -> None:
    """Rows holding the same keys in the same order are read at fixed places; a row in
    another order, missing or adding a key, or a key given twice is read by name: every
    case gives each named feature's value (NaN where absent)."""
    kind = pa.map_(pa.string(), pa.float64())
    same = [[("b", 1.0), ("a", 2.0), ("c", 3.0)], [("b", 4.0), ("a", 5.0), ("c", 6.0)]]
    cases = {
        "same order": same,
        "another order": [*same, [("a", 7.0), ("b", 8.0), ("c", 9.0)]],
        "missing": [*same, [("b", 7.0), ("a", 8.0)]],
        "added": [*same, [("b", 7.0), ("a", 8.0), ("c", 9.0), ("d", 1.0)]],
        "same lengths, other names": [*same, [("b", 7.0), ("x", 8.0), ("c", 9.0)]],
        "a key twice": [[("b", 1.0), ("b", 2.0)], [("b", 3.0), ("b", 4.0)]],
    }
    for case, rows in cases.items():
        column = pa.array(rows, type=kind)
        for part in (column, column.slice(1)):
            matrix = feature_matrix(part, ["a", "c", "nope", "b"])
            for i, row in enumerate(part.to_pylist()):
                values = dict(row)  # the last of a key given twice
                expected = [values.get(name, np.nan) for name in ["a", "c", "nope", "b"]]
                np.testing.assert_array_equal(matrix[i], expected, err_msg=case)
