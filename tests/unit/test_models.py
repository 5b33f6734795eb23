from __future__ import annotations

import math
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from river import linear_model, preprocessing
from scipy.optimize import minimize

from driftloop.kit.errors import DataLoss, InvalidArgument, NotFound
from driftloop.models.artifacts import LocalArtifactStore, sha256_of
from driftloop.models.baseline import bin_counts
from driftloop.models.convert import row_from_proto, row_to_proto
from driftloop.models.linear import LinearModel, fit_logistic, fit_ridge
from driftloop.models.loading import VersionSpec, load_model
from driftloop.models.schema import MAX_CATEGORY_CHARS, Feature, Schema
from driftloop.models.table import read_table
from driftloop.models.training import TrainingSpec, train_linear
from tests.datasets import churn, without

BINARY = without(churn(), "segment", "spend")


def test_training_is_deterministic_to_the_byte() -> None:
    first = train_linear(BINARY, TrainingSpec(target="churned", seed=3))
    second = train_linear(BINARY, TrainingSpec(target="churned", seed=3))
    assert first.artifact == second.artifact
    assert sha256_of(first.artifact) == sha256_of(second.artifact)
    other_seed = train_linear(BINARY, TrainingSpec(target="churned", seed=4))
    assert other_seed.artifact != first.artifact
    assert first.metrics["auc"] > 0.8
    assert first.training_rows == 1600 and first.holdout_rows == 400


def test_logistic_matches_an_independent_optimiser() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(500, 4))
    y = (rng.random(500) < 1 / (1 + np.exp(-(x @ [1.0, -2.0, 0.5, 0.0] + 0.3)))).astype(np.int64)
    weights, intercepts = fit_logistic(x, y, 2, l2=1.0)

    def objective(theta: np.ndarray) -> float:
        z = x @ theta[:4] + theta[4]
        return float(np.sum(np.logaddexp(0, z) - y * z) + 0.5 * np.sum(theta[:4] ** 2))

    reference = minimize(objective, np.zeros(5), method="BFGS", options={"gtol": 1e-10}).x
    np.testing.assert_allclose(weights[0], reference[:4], atol=1e-5)
    np.testing.assert_allclose(intercepts[0], reference[4], atol=1e-5)


def test_ridge_matches_least_squares_on_the_augmented_system() -> None:
    rng = np.random.default_rng(6)
    x = rng.normal(size=(300, 3))
    y = x @ [2.0, -1.0, 0.0] + 4.0 + rng.normal(size=300) * 0.1
    weights, intercepts = fit_ridge(x, y, l2=2.0)
    xc, yc = x - x.mean(axis=0), y - y.mean()
    augmented = np.vstack([xc, np.sqrt(2.0) * np.eye(3)])
    reference = np.linalg.lstsq(augmented, np.concatenate([yc, np.zeros(3)]), rcond=None)[0]
    np.testing.assert_allclose(weights[0], reference, atol=1e-10)
    assert intercepts[0] == pytest.approx(y.mean() - x.mean(axis=0) @ reference)


def test_one_row_and_batch_paths_agree_for_every_kind() -> None:
    table = churn()
    cases = [
        (without(table, "segment", "spend"), "churned", "binary"),
        (without(table, "churned", "spend"), "segment", "multiclass"),
        (without(table, "churned", "segment"), "spend", "regression"),
    ]
    for data, target, kind in cases:
        trained = train_linear(data, TrainingSpec(target=target))
        model = trained.model
        assert model.output_kind == kind
        rows = [
            {
                name: (float(column[i]) if column.dtype.kind == "f" else str(column[i]))
                for name, column in data.columns.items()
                if name != target
            }
            for i in range(5)
        ]
        batch = model.predict(rows)
        for row, together in zip(rows, batch, strict=True):
            (alone,) = model.predict([row])
            # To the bit: a row's answer does not depend on the rows it shares a call with.
            assert alone == together
        if kind == "multiclass":
            assert batch[0].probabilities is not None
            assert sum(batch[0].probabilities.values()) == pytest.approx(1.0)
            assert set(batch[0].probabilities) == {"high", "low", "mid"}


def test_nan_is_imputed_and_unseen_categories_contribute_nothing() -> None:
    model = train_linear(BINARY, TrainingSpec(target="churned")).model
    assert model.schema.by_name["x2"].allow_nan
    assert not model.schema.by_name["x0"].allow_nan
    row = {f"x{i}": 0.0 for i in range(6)} | {"plan": "basic", "region": "north"}
    mean_x2 = dict((name, mean) for name, mean, _ in model.preprocessing.numeric)["x2"]
    with_nan = model.predict([row | {"x2": math.nan}])[0].value
    with_mean = model.predict([row | {"x2": mean_x2}])[0].value
    assert with_nan == pytest.approx(with_mean)
    unseen = model.predict([row | {"plan": "enterprise"}])[0].value
    weights = model.predict([row | {"plan": "basic"}])[0].value
    assert unseen != weights  # "basic" has a weight; an unseen plan has none
    assert 0.0 < unseen < 1.0


def test_the_baseline_freezes_decile_bins() -> None:
    trained = train_linear(BINARY, TrainingSpec(target="churned"))
    x0 = next(item for item in trained.baseline.numeric if item.feature == "x0")
    assert len(x0.edges) == 9
    assert sum(x0.frequencies) == pytest.approx(1.0)
    assert all(abs(share - 0.1) < 0.01 for share in x0.frequencies)
    assert x0.sample == sorted(x0.sample)
    x2 = next(item for item in trained.baseline.numeric if item.feature == "x2")
    assert 0.03 < x2.nan_share < 0.07
    plan = next(item for item in trained.baseline.categorical if item.feature == "plan")
    assert sorted(plan.categories) == ["basic", "family", "pro"]
    assert trained.baseline.output is not None
    assert trained.baseline.output_labels is not None
    assert trained.baseline.holdout_metrics == trained.metrics
    assert list(bin_counts(np.asarray([-np.inf, 0.0, np.nan, np.inf]), [0.0, 1.0])) == [2, 0, 1]


def test_artifact_store_verifies_every_read(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    digest = store.put(b"weights")
    assert store.put(b"weights") == digest
    assert store.get(digest) == b"weights"
    path = tmp_path / digest[:2] / digest
    path.write_bytes(b"tampered")
    with pytest.raises(DataLoss, match="failed verification"):
        store.get(digest)
    with pytest.raises(NotFound):
        store.get("0" * 64)
    with pytest.raises(InvalidArgument, match="not a SHA-256"):
        store.get("../../etc/passwd")


def test_a_tampered_linear_artifact_is_never_loaded(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    trained = train_linear(BINARY, TrainingSpec(target="churned"))
    digest = store.put(trained.artifact)
    spec = VersionSpec("churn", "1", "linear", digest, trained.model.schema, "binary")
    assert isinstance(load_model(spec, store), LinearModel)
    (tmp_path / digest[:2] / digest).write_bytes(
        trained.artifact.replace(b'"weights":[[', b'"weights":[[9')
    )
    with pytest.raises(DataLoss):
        load_model(spec, store)


def test_river_and_python_flavors_load_and_predict(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    schema = Schema((Feature("x", "number"), Feature("y", "number")))
    river_model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    for i in range(200):
        river_model.learn_one({"x": float(i % 7), "y": float(i % 3)}, i % 7 > 3)
    digest = store.put(pickle.dumps(river_model))
    loaded = load_model(VersionSpec("m", "1", "river", digest, schema, "binary"), store)
    (prediction,) = loaded.predict([{"x": 6.0, "y": 1.0}])
    assert prediction.value > 0.5 and prediction.label == "1"

    digest = store.put(b"2.5")
    user = load_model(
        VersionSpec("m", "2", "python", digest, schema, "regression", "tests.user_model:Scaled"),
        store,
    )
    assert user.predict([{"x": 2.0, "y": 1.0}])[0].value == pytest.approx(7.5)


def test_schema_validation_names_the_field() -> None:
    schema = Schema(
        (
            Feature("age", "number"),
            Feature("plan", "category"),
            Feature("income", "number", allow_nan=True),
        )
    )
    good: dict[str, Any] = {"age": 30.0, "plan": "pro", "income": math.nan}
    schema.validate([good], max_rows=10)
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"plan": "pro", "income": 1.0}, "row.age", "missing feature"),
        (good | {"colour": "red"}, "row.colour", "unknown feature"),
        (good | {"age": "thirty"}, "row.age", "expected a number"),
        (good | {"plan": 3.0}, "row.plan", "expected a category"),
        (good | {"age": math.nan}, "row.age", "NaN is not allowed"),
        (good | {"income": math.inf}, "row.income", "infinity"),
        (good | {"age": -math.inf}, "row.age", "infinity"),
        (good | {"age": True}, "row.age", "expected a number"),
        (good | {"plan": None}, "row.plan", "expected a category"),
        (good | {"plan": "p" * (MAX_CATEGORY_CHARS + 1)}, "row.plan", "longer than"),
        ({"age": 30.0, "plan": "pro"}, "row.income", "missing feature"),
        ({"age": 30.0, "plan": "pro", "colour": 1.0}, "row.income", "missing feature"),
    ]
    for row, field, reason in cases:
        with pytest.raises(InvalidArgument) as error:
            schema.validate([row], max_rows=10, path="row")
        assert error.value.field == field
        assert reason in error.value.reason
    # Numbers of other types than float, and a category at the length limit, are valid.
    for fine in (
        {"age": 30, "income": np.float64(2.5)},
        {"age": -0.0, "income": 0.0},
        {"plan": "p" * MAX_CATEGORY_CHARS},
    ):
        schema.validate_row(good | fine)
    with pytest.raises(InvalidArgument, match="more than the limit of 2"):
        schema.validate([good] * 3, max_rows=2)
    bad: dict[str, Any] = good | {"age": None}
    with pytest.raises(InvalidArgument) as error:
        schema.validate([good, bad], max_rows=10)
    assert error.value.field == "rows[1].age"


def test_rows_from_protobuf_keep_every_value_and_its_kind() -> None:
    message = row_to_proto({"a": 1.5, "zero": 0.0, "negative_zero": -0.0, "plan": "pro"})
    message.features["nan"].number = math.nan
    message.features["empty"].category = ""
    message.features["unset"].SetInParent()
    row = row_from_proto(message)
    assert row.keys() == {"a", "zero", "negative_zero", "plan", "nan", "empty", "unset"}
    assert row["a"] == 1.5 and row["plan"] == "pro" and row["empty"] == ""
    negative_zero, nan = row["negative_zero"], row["nan"]
    assert isinstance(negative_zero, float) and isinstance(nan, float)
    assert row["zero"] == 0.0 and math.copysign(1.0, negative_zero) == -1.0
    assert isinstance(row["zero"], float) and math.isnan(nan)
    assert row["unset"] is None  # validation names it: "expected a number, got a NoneType"


def test_tables_read_from_csv_and_parquet_hash_the_same(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    csv = tmp_path / "data.csv"
    csv.write_text("age,plan,churned\n31,pro,1\n45,basic,0\n,pro,1\n")
    parquet = tmp_path / "data.parquet"
    pq.write_table(
        pa.table(
            {"age": [31.0, 45.0, None], "plan": ["pro", "basic", "pro"], "churned": [1, 0, 1]}
        ),
        parquet,
    )
    from_csv, from_parquet = read_table(csv), read_table(parquet)
    assert from_csv.content_sha256() == from_parquet.content_sha256()
    assert np.isnan(from_csv.columns["age"][2])
    jsonl = tmp_path / "data.jsonl"
    jsonl.write_text(
        '{"age": 31, "plan": "pro", "churned": 1}\n{"age": 45, "plan": "basic", "churned": 0}\n'
        '{"age": null, "plan": "pro", "churned": 1}\n'
    )
    assert read_table(jsonl).content_sha256() == from_csv.content_sha256()
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(InvalidArgument, match=r"only \.csv, \.parquet and \.jsonl"):
        read_table(tmp_path / "x.json")
