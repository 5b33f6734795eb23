"""Models trained elsewhere in the standalone composition (real broker, real ClickHouse
engine): a scikit-learn pipeline with a categorical encoder saved with skops, its ONNX
export and an MLflow directory of it, each registered with reference and holdout data,
served through the gateway, logged to ClickHouse and reported on against its reference
data; a pickle without the trust flag refused; a version without reference data served
with a report that says it has no baseline."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from driftloop.clickhouse.client import ClickHouse
from driftloop.client import DriftloopClient
from driftloop.kit.errors import InvalidArgument
from driftloop.kit.settings import KafkaSettings
from driftloop.models.convert import OUTPUT_KINDS, schema_to_proto
from driftloop.models.schema import Feature, Row, Schema
from driftloop.models.table import Table
from driftloop.v1 import registry_pb2
from tests import foreign_models as fm
from tests.standalone import standalone

OVERRIDES: dict[str, dict[str, object]] = {
    "drift": {"sink_batch": 500, "evaluate_every_s": 3600, "evaluate_every_rows": 0},
    "retrainer": {"training": False},
    "shadow": {"compare_every_s": 3600},
}
SERVED = 600


def rows_of(table: Table) -> list[Row]:
    names = (*fm.NUMBERS, *fm.CATEGORIES)
    lists = {name: table.columns[name].tolist() for name in names}
    return [{name: lists[name][i] for name in names} for i in range(table.rows)]


def shifted(table: Table) -> Table:
    """The traffic: x0 moved by two standard deviations, everything else as trained."""
    columns = dict(table.columns)
    columns["x0"] = columns["x0"].astype(np.float64) + 2.0
    return Table(columns)


async def serve(client: DriftloopClient, model: str, rows: list[Row]) -> list[Any]:
    responses = []
    for start in range(0, len(rows), 100):
        responses += await client.serve_batch(model, rows[start : start + 100])
    return responses


async def stored(clickhouse: ClickHouse, model: str, version: str, rows: int) -> None:
    """Until ClickHouse holds `rows` live predictions of that version."""
    deadline = time.monotonic() + 60
    while True:
        result = await clickhouse.query(
            f"SELECT count() FROM {clickhouse.table('predictions')} FINAL "
            "WHERE model = {m:String} AND version = {v:String} AND role = 'live'",
            {"m": model, "v": version},
        )
        if int(result.scalar()) >= rows:
            return
        assert time.monotonic() < deadline, f"only {result.scalar()} rows of {model} v{version}"
        await asyncio.sleep(0.2)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("made")
    table = fm.data(2000 + 1000 + SERVED)
    reference = table.take(np.arange(2000))
    fitted = fm.pipeline(reference)
    return {
        "fitted": fitted,
        "traffic": shifted(table.take(np.arange(3000, 3000 + SERVED))),
        "reference": fm.write_parquet(reference, folder / "reference.parquet"),
        "holdout": fm.write_parquet(table.take(np.arange(2000, 3000)), folder / "holdout.parquet"),
        "skops": fm.save_skops(fitted, folder / "churn.skops"),
        "joblib": fm.save_joblib(fitted, folder / "churn.joblib"),
        "onnx": fm.save_onnx(fitted, folder / "churn.onnx"),
        "mlflow": fm.save_mlflow_sklearn(fitted, folder / "mlflow", reference, "skops"),
    }


async def test_foreign_models_registered_served_logged_and_reported(
    kafka_settings: KafkaSettings, clickhouse: ClickHouse, tmp_path: Path, made: dict[str, Any]
) -> None:
    import pandas as pd

    traffic = rows_of(made["traffic"])
    truth = made["fitted"].predict_proba(pd.DataFrame(traffic))[:, 1]
    async with standalone(kafka_settings, clickhouse, tmp_path, "foreign", OVERRIDES) as stack:
        client = stack.client
        for name, flavor in (("skops", "sklearn"), ("onnx", "onnx"), ("mlflow", None)):
            model = f"churn-{name}"
            record = await client.register_artifact(
                model,
                made[name],
                flavor=flavor,
                reference_data=made["reference"],
                holdout=made["holdout"],
                target=fm.TARGET,
            )
            assert record.flavor == (flavor or "sklearn")
            assert {m.name for m in record.metrics} >= {"accuracy", "auc", "log_loss"}
            await client.set_alias(model, "champion", record.version)

            responses = await serve(client, model, traffic)
            assert {r.version for r in responses} == {record.version}
            served = [r.output.value for r in responses]
            assert served == pytest.approx(list(truth), abs=1e-5), name
            await stored(clickhouse, model, record.version, SERVED)

            report = await client.drift_report(model, record.version, last_n=SERVED)
            assert report.rows == SERVED and not report.baseline_missing
            psi = {s.feature: s for s in report.features if s.test == "psi"}
            assert set(psi) == {*fm.NUMBERS, *fm.CATEGORIES}, name
            # Against the reference data: x0 moved, the other features did not.
            assert psi["x0"].drifted and psi["x0"].score > 0.5, name
            assert not any(psi[f].drifted for f in psi if f != "x0"), name
            assert report.HasField("prediction")

        # A pickle without the trust flag: refused before upload by the client...
        with pytest.raises(InvalidArgument, match="--trust-pickle"):
            await client.register_artifact(
                "churn-pickle", made["joblib"], flavor="sklearn", reference_data=made["reference"]
            )
        # ... and by the registry itself, whoever calls it.
        digest = await client.upload_artifact(made["joblib"].read_bytes())
        schema = Schema(
            tuple(Feature(n, "number", allow_nan=n == "x2") for n in fm.NUMBERS)
            + tuple(Feature(n, "category") for n in fm.CATEGORIES)
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await client.register(
                registry_pb2.ModelVersion(
                    model="churn-pickle",
                    flavor="sklearn",
                    artifact_sha256=digest,
                    schema=schema_to_proto(schema),
                    output_kind=OUTPUT_KINDS["binary"],
                )
            )
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "version.pickle_trusted" in (refused.value.details() or "")
        assert "--trust-pickle" in (refused.value.details() or "")
        trusted = await client.register_artifact(
            "churn-pickle",
            made["joblib"],
            flavor="sklearn",
            reference_data=made["reference"],
            target=fm.TARGET,
            trust_pickle=True,
        )
        assert trusted.pickle_trusted

        # Without reference data: served, and its report says there is no baseline.
        bare = await client.register_artifact(
            "churn-bare", made["skops"], flavor="sklearn", schema=schema
        )
        assert not bare.HasField("baseline")
        await client.set_alias("churn-bare", "champion", bare.version)
        responses = await serve(client, "churn-bare", traffic)
        assert [r.output.value for r in responses] == pytest.approx(list(truth), abs=1e-9)
        await stored(clickhouse, "churn-bare", bare.version, SERVED)
        report = await client.drift_report("churn-bare", bare.version, last_n=SERVED)
        assert report.baseline_missing and report.rows == SERVED
        assert not report.features and not report.HasField("prediction")
        assert not report.data_drift
