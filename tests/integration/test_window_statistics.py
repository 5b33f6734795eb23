"""The window's drift statistics computed inside ClickHouse (WindowReader.statistics, one
query) give the same report, number for number, as the window's rows read out and
counted in memory (WindowReader.read, build_report), on the real engine: missing and
infinite numbers, categories (missing, unseen), rows written out of order and twice, a
partly labelled window, last-N and time windows."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import numpy as np
import pytest

from driftloop.clickhouse.client import ClickHouse
from driftloop.clickhouse.prediction_log import PredictionLog, Traffic
from driftloop.drift.report import Report, Thresholds, build_report, report_of_stats
from driftloop.drift.windows import Window, WindowReader
from driftloop.models.baseline import Baseline
from driftloop.models.training import TrainedModel
from tests import drift_streams

MODEL = "counted"
ROWS = 3_000


@pytest.fixture(scope="module")
def trained() -> TrainedModel:
    return drift_streams.with_plan(drift_streams.train())


async def write_window(clickhouse: ClickHouse, trained: TrainedModel) -> None:
    """3,000 predictions, x3 shifted by 0.5 sigma: x5 missing on every 7th row, x7 +inf
    on every 97th and -inf on every 89th, the plan missing on every 11th and unseen
    ("enterprise") on every 13th; labels for the first 2,000 requests; written shuffled,
    and the first 500 twice (a re-delivery)."""
    data = drift_streams.table(ROWS, seed=77, shift={"x3": 0.5})
    stream = drift_streams.stream(trained, data, model=MODEL, version="1")
    plans = drift_streams.plans(ROWS, seed=78)
    for row, event in enumerate(stream.predictions):
        if row % 7 == 0:
            del event.features["x5"]
        if row % 97 == 0:
            event.features["x7"].number = float("inf")
        if row % 89 == 0:
            event.features["x7"].number = float("-inf")
        if row % 11 == 0:
            continue
        event.features["plan"].category = "enterprise" if row % 13 == 0 else str(plans[row])
    order = np.random.default_rng(79).permutation(ROWS)
    shuffled = [stream.predictions[i] for i in order]
    log = PredictionLog(clickhouse)
    for first in range(0, ROWS, 1_000):
        await log.write(predictions=shuffled[first : first + 1_000])
    await log.write(predictions=stream.predictions[:500], labels=stream.labels[:2_000])


def plain(report: Report) -> dict[str, Any]:
    """The report as plain values (arrays as lists), to compare two reports exactly."""

    def convert(value: Any) -> Any:
        if isinstance(value, np.ndarray):
            return value.tolist()
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: convert(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, list):
            return [convert(item) for item in value]
        if isinstance(value, dict):
            return {key: convert(item) for key, item in value.items()}
        return value

    result: dict[str, Any] = convert(report)
    return result


async def both_reports(
    clickhouse: ClickHouse, baseline: Baseline, window: Window
) -> tuple[Report, Report]:
    reader = WindowReader(clickhouse)
    thresholds = Thresholds()
    counted = await reader.statistics(MODEL, "1", window, baseline)
    in_clickhouse = report_of_stats(
        MODEL, "1", window.kind, "binary", baseline, counted, thresholds
    )
    rows = await reader.read(
        MODEL,
        "1",
        window,
        [item.feature for item in baseline.numeric],
        [item.feature for item in baseline.categorical],
    )
    in_memory = build_report(MODEL, "1", window.kind, "binary", baseline, rows, thresholds)
    # What the drift service reads (embedded here: the rows counted in memory) agrees too.
    chosen = await reader.counts(MODEL, "1", window, baseline)
    served = report_of_stats(MODEL, "1", window.kind, "binary", baseline, chosen, thresholds)
    assert plain(served) == plain(in_memory)
    return in_clickhouse, in_memory


@pytest.mark.parametrize(
    "window",
    [
        Window(last_n=2_000),
        Window(last_n=10_000),
        Window(
            start=drift_streams.T0 + dt.timedelta(seconds=500),
            end=drift_streams.T0 + dt.timedelta(seconds=2_500),
        ),
    ],
    ids=["last-2000", "last-more-than-written", "time"],
)
async def test_the_report_from_clickhouse_counts_equals_the_report_of_the_rows(
    clickhouse: ClickHouse, trained: TrainedModel, window: Window
) -> None:
    await write_window(clickhouse, trained)
    in_clickhouse, in_memory = await both_reports(clickhouse, trained.baseline, window)
    assert plain(in_clickhouse) == plain(in_memory)
    # The window is what it should be, and the statistics saw the edge cases.
    expected_rows = {"last_n": min(window.last_n, ROWS), "time": 2_000}[window.kind]
    assert in_clickhouse.rows == expected_rows
    assert in_clickhouse.labelled > 0
    assert "x3" in {f.stream for f in in_clickhouse.drifted_features}
    assert {f.stream for f in in_clickhouse.features} >= {"x5", "x7", "plan"}
    assert in_clickhouse.prediction is not None


async def test_an_empty_window_and_a_baseline_without_references_agree_too(
    clickhouse: ClickHouse, trained: TrainedModel
) -> None:
    await write_window(clickhouse, trained)
    empty = Window(start=drift_streams.T0 - dt.timedelta(days=1), end=drift_streams.T0)
    in_clickhouse, in_memory = await both_reports(clickhouse, trained.baseline, empty)
    assert plain(in_clickhouse) == plain(in_memory)
    assert in_clickhouse.rows == 0 and not in_clickhouse.features
    in_clickhouse, in_memory = await both_reports(clickhouse, Baseline(), Window(last_n=100))
    assert plain(in_clickhouse) == plain(in_memory)
    assert in_clickhouse.baseline_missing and in_clickhouse.rows == 100


def same_rows(first: dict[str, np.ndarray], second: dict[str, np.ndarray]) -> bool:
    """Whether two reads of a window hold the same rows (reads have no order: rows are
    matched by request id), NaN equal to NaN."""
    if first.keys() != second.keys():
        return False
    one, other = np.argsort(first["request_id"]), np.argsort(second["request_id"])
    for name in first:
        a, b = np.asarray(first[name])[one], np.asarray(second[name])[other]
        if a.dtype.kind == "f" and not np.array_equal(a, b, equal_nan=True):
            return False
        if a.dtype.kind != "f" and a.tolist() != b.tolist():
            return False
    return True


async def test_rows_whose_features_come_in_one_order_are_read_as_one_array_exactly(
    clickhouse: ClickHouse, trained: TrainedModel
) -> None:
    """Rows that all carry the same feature names in the same order are read from the
    maps' values in one array; the numbers are those of the lookup by name, and a row in
    another order sends the whole window back to the lookup by name."""
    data = drift_streams.table(500, seed=81)
    stream = drift_streams.stream(trained, data, model="ordered", version="1")
    for row, event in enumerate(stream.predictions):
        if row % 3 == 0:
            event.features["x2"].number = float("inf")
    log = PredictionLog(clickhouse)
    await log.write(predictions=stream.predictions, labels=stream.labels[:200])
    reader = WindowReader(clickhouse)
    numeric = [*drift_streams.NAMES, "absent"]
    traffic = Traffic("ordered", ("1",), last_n=400)
    one_array = await reader._read_in_one_order(traffic, numeric, ["plan"])
    by_name = await reader._read_by_name(traffic, numeric, ["plan"])
    assert one_array is not None
    assert same_rows(one_array, by_name)
    assert np.isinf(one_array["n2"]).sum() > 0 and np.isnan(one_array[f"n{len(numeric) - 1}"]).all()

    newest = stream.predictions[-1]
    reordered = {name: newest.features[name].number for name in reversed(drift_streams.NAMES)}
    await clickhouse.insert(
        "predictions",
        ["request_id", "time", "model", "version", "role", "numbers", "output_kind"],
        [
            [
                "reordered",
                drift_streams.T0 + dt.timedelta(days=1),
                "ordered",
                "1",
                "live",
                reordered,
                "binary",
            ]
        ],
    )
    assert await reader._read_in_one_order(traffic, numeric, ["plan"]) is None
    window = await reader.read("ordered", "1", Window(last_n=400), numeric, ["plan"])
    assert window.rows == 400 and window.numbers["x0"].size == 400
    assert window.numbers["x0"][np.isfinite(window.numbers["x0"])].size == 400
