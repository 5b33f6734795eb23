"""The embedded ClickHouse engine with the driftloop schema."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import subprocess
import sys
from pathlib import Path

import pytest

from driftloop.clickhouse.backend import ClickHouseError, EmbeddedBackend
from driftloop.clickhouse.client import ClickHouse
from driftloop.clickhouse.prediction_log import PredictionLog, Traffic, labelled_window_query
from driftloop.clickhouse.schema import schema_statements
from driftloop.v1 import events_pb2
from tests.factories import T0, prediction


async def test_parameters_are_bound_not_formatted(clickhouse: ClickHouse) -> None:
    hostile = "churn' OR 1=1 --"
    log = PredictionLog(clickhouse)
    await log.write([prediction(1), prediction(2, model="other")])
    assert await log.last_n(hostile, "1", 10) == []
    result = await clickhouse.query("SELECT {text:String} AS text", {"text": hostile})
    assert result.scalar() == hostile


async def test_schema_is_idempotent(clickhouse: ClickHouse) -> None:
    await PredictionLog(clickhouse).write([prediction(1)])
    statements = schema_statements(clickhouse.database, None)
    assert any("retrain_runs" in statement for statement in statements)
    assert await clickhouse.apply_schema() == len(statements)  # again, changing nothing
    result = await clickhouse.query(f"SELECT count() FROM {clickhouse.table('predictions')}")
    assert result.scalar() == 1


async def test_a_later_label_replaces_an_earlier_one_and_joins(clickhouse: ClickHouse) -> None:
    log = PredictionLog(clickhouse)
    first = events_pb2.LabelEvent(request_id="req-1", label="0", source="guess")
    first.time.FromDatetime(T0 + dt.timedelta(days=1))
    corrected = events_pb2.LabelEvent(request_id="req-1", label="1", source="billing")
    corrected.time.FromDatetime(T0 + dt.timedelta(days=2))
    failed = prediction(3)
    failed.error = "INTERNAL"
    failed_label = events_pb2.LabelEvent(request_id="req-3", label="1", source="billing")
    failed_label.time.FromDatetime(T0 + dt.timedelta(days=1))
    await log.write([prediction(1), prediction(2), failed], [corrected, failed_label])
    await log.write([prediction(1)], [first, corrected])  # out of order and re-delivered
    # The query production runs (drift windows, canary, training data, counts).
    window, params = labelled_window_query(
        clickhouse, Traffic("churn", ("1",), failures=True), ["error != '' AS failed"]
    )
    rows = await clickhouse.query(
        "SELECT request_id, failed, labelled, truth_label, truth_is_label, "
        f"label_time_us = {int((T0 + dt.timedelta(days=2)).timestamp() * 1e6)} "
        f"FROM ({window}) ORDER BY request_id",
        params,
    )
    assert rows.rows == [
        ("req-1", False, True, "1", True, True),
        ("req-2", False, False, "", True, False),
        ("req-3", True, True, "1", True, False),
    ]
    training = await log.labelled("churn", ["age"], ["plan"], T0, T0 + dt.timedelta(days=1), 10)
    assert list(training["request_id"]) == ["req-1"]  # the failed call has no answer to judge
    assert list(training["n0"]) == [31.0] and list(training["c0"]) == ["pro"]
    assert await log.labelled_count("churn", T0) == 1
    counts = await log.window_counts("churn", "1", T0, T0 + dt.timedelta(days=1))
    assert (counts.rows, counts.labelled, counts.errors) == (3, 1, 1)
    # The view the dashboards read joins the same way.
    joined = await clickhouse.query(
        f"SELECT request_id, truth_label, label_source FROM "
        f"{clickhouse.table('predictions_labelled')} ORDER BY request_id"
    )
    assert joined.rows == [("req-1", "1", "billing")]


async def test_values_come_back_as_python_types(clickhouse: ClickHouse) -> None:
    result = await clickhouse.query(
        "SELECT toFloat64('nan') AS nan, toUInt64(18446744073709551615) AS big, "
        "toDateTime64('2026-03-01 12:00:00.5', 3, 'UTC') AS at, "
        "CAST(NULL, 'Nullable(Float64)') AS missing"
    )
    nan, big, at, missing = result.rows[0]
    assert math.isnan(nan)
    assert big == 18446744073709551615
    assert at == dt.datetime(2026, 3, 1, 12, 0, 0, 500000, tzinfo=dt.UTC)
    assert missing is None


async def test_sql_errors_are_clickhouse_errors(clickhouse: ClickHouse) -> None:
    with pytest.raises(ClickHouseError, match="UNKNOWN_IDENTIFIER"):
        await clickhouse.query(f"SELECT nope FROM {clickhouse.table('predictions')}")


async def test_a_second_process_cannot_open_the_same_folder(
    clickhouse_backend: EmbeddedBackend,
) -> None:
    code = (
        "import sys; from pathlib import Path\n"
        "from driftloop.clickhouse.backend import EmbeddedBackend, ClickHouseError\n"
        "try:\n    EmbeddedBackend(Path(sys.argv[1]))\n"
        "except ClickHouseError as error:\n    print(error); sys.exit(3)\n"
    )
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", code, str(clickhouse_backend.path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 3, result.stderr
    assert "open in another process" in result.stdout


def test_the_deploy_schema_is_the_package_schema() -> None:
    deployed = Path(__file__).resolve().parents[2] / "deploy" / "clickhouse" / "schema.sql"
    from driftloop.clickhouse.schema import schema_text

    assert deployed.read_text() == schema_text()


async def test_string_parameters_arrive_exactly_as_sent(clickhouse: ClickHouse) -> None:
    for value in ["a\\b", "a\nb", "tab\there", "quote'", "nul\0byte", "é\u2028", "a\\nb", ""]:
        result = await clickhouse.query("SELECT {value:String}", {"value": value})
        assert result.scalar() == value


async def test_array_parameters_arrive_as_arrays(clickhouse: ClickHouse) -> None:
    names = ["plain", "it's", "back\\slash", ""]
    result = await clickhouse.query(
        "SELECT {names:Array(String)}, has({names:Array(String)}, 'it''s'), "
        "length({numbers:Array(Float64)})",
        {"names": names, "numbers": [1.5, 2.0]},
    )
    assert result.rows[0][0] == names
    assert result.rows[0][1:] == (1, 2)


async def test_a_versions_features_come_in_prediction_time_order(clickhouse: ClickHouse) -> None:
    log = PredictionLog(clickhouse)
    missing = prediction(2)
    del missing.features["age"]
    await log.write([prediction(4), prediction(3), missing, prediction(1, version="2")])
    await log.write([prediction(1)])
    start, end = T0, T0 + dt.timedelta(seconds=4)  # [start, end): req-4 is after it
    columns = await log.features("churn", "1", ["age"], ["plan"], start, end)
    assert columns["request_id"].tolist() == ["req-1", "req-2", "req-3"]
    assert columns["n0"][0] == 31.0 and math.isnan(columns["n0"][1]) and columns["n0"][2] == 33.0
    assert columns["c0"].tolist() == ["pro", "free", "pro"]
