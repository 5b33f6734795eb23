"""Models trained elsewhere: scikit-learn (skops; pickle only when trusted), ONNX and MLflow
directories, loaded as the inference service loads them, with their reference baseline
and holdout metrics; each on a real artifact made here."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from driftloop.kit.errors import FailedPrecondition, InvalidArgument
from driftloop.models.artifacts import LocalArtifactStore
from driftloop.models.loading import VersionSpec, load_model
from driftloop.models.mlflow_model import read_mlflow_model
from driftloop.models.reference import LocalArtifact, load_local, prepare, resolve_schema
from driftloop.models.registration import artifact_registration
from driftloop.models.schema import Feature, Schema
from driftloop.models.table import Table
from tests import foreign_models as fm

ROW = {f"x{i}": 0.3 * i for i in range(6)} | {"plan": "pro", "region": "north"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("foreign")


@pytest.fixture(scope="module")
def tables() -> tuple[Table, Table]:
    table = fm.data(3000)
    return table.take(np.arange(2000)), table.take(np.arange(2000, 3000))


@pytest.fixture(scope="module")
def fitted(tables: tuple[Table, Table]) -> Any:
    return fm.pipeline(tables[0])


def expected(fitted: Any, rows: list[dict[str, Any]]) -> Any:
    import pandas as pd

    return fitted.predict_proba(pd.DataFrame(rows))[:, 1]


def test_skops_pipeline_loads_and_predicts_like_scikit_learn(
    folder: Path, fitted: Any, tables: tuple[Table, Table]
) -> None:
    reference, holdout = tables
    path = fm.save_skops(fitted, folder / "model.skops")
    schema = resolve_schema(None, reference, fm.TARGET)
    model = load_local("sklearn", LocalArtifact(path), schema, None)
    assert model.output_kind == "binary" and not model.inline
    rows = [ROW, ROW | {"x2": math.nan, "plan": "never-seen"}]
    got = model.predict(rows)
    assert [p.value for p in got] == pytest.approx(list(expected(fitted, rows)), abs=1e-12)
    assert got[0].label == ("1" if got[0].value >= 0.5 else "0")
    assert set(got[0].probabilities or {}) == {"0", "1"}
    # A schema that allows no NaN lets scikit-learn skip its finiteness checks: same answer.
    strict = Schema(tuple(Feature(f.name, f.kind) for f in schema.features))
    finite = load_local("sklearn", LocalArtifact(path), strict, "binary")
    assert finite.predict([ROW])[0].value == pytest.approx(got[0].value, abs=1e-15)

    prepared = prepare(model, reference, holdout, fm.TARGET)
    # The schema from the reference data: NaN accepted where the data has it (x2).
    assert prepared.schema.by_name["x2"].allow_nan and not prepared.schema.by_name["x0"].allow_nan
    assert prepared.schema.by_name["plan"].categories == ("basic", "family", "pro")
    assert prepared.baseline is not None
    assert [b.feature for b in prepared.baseline.numeric] == list(fm.NUMBERS)
    assert [b.feature for b in prepared.baseline.categorical] == list(fm.CATEGORIES)
    scores = expected(fitted, [dict(r) for r in _rows(reference)])
    assert prepared.baseline.output is not None
    assert prepared.baseline.output.mean == pytest.approx(float(scores.mean()), abs=1e-12)
    assert prepared.baseline.output_labels is not None
    assert set(prepared.baseline.output_labels.categories) == {"0", "1"}
    truth = holdout.columns[fm.TARGET]
    accuracy = float(((expected(fitted, _rows(holdout)) >= 0.5) == (truth == 1.0)).mean())
    assert prepared.metrics["accuracy"] == pytest.approx(accuracy)
    assert prepared.baseline.holdout_metrics == prepared.metrics
    assert 0.7 < prepared.metrics["auc"] < 1.0


def _rows(table: Table) -> list[dict[str, Any]]:
    names = (*fm.NUMBERS, *fm.CATEGORIES)
    return [{n: table.columns[n][i].item() for n in names} for i in range(table.rows)]


def test_a_pickle_is_refused_without_the_trust_flag_and_loads_with_it(
    folder: Path, fitted: Any, tables: tuple[Table, Table]
) -> None:
    path = fm.save_joblib(fitted, folder / "model.joblib")
    schema = resolve_schema(None, tables[0], fm.TARGET)
    with pytest.raises(InvalidArgument, match="--trust-pickle") as refused:
        load_local("sklearn", LocalArtifact(path), schema, None)
    assert refused.value.field == "trust_pickle"
    # The inference service's loader refuses it the same way, whatever the registry said.
    store = LocalArtifactStore(folder / "store")
    digest = store.put(path.read_bytes())
    spec = VersionSpec("m", "1", "sklearn", digest, schema, "binary")
    with pytest.raises(InvalidArgument, match="pickle"):
        load_model(spec, store)
    trusted = load_model(
        VersionSpec("m", "1", "sklearn", digest, schema, "binary", "", True), store
    )
    assert trusted.predict([ROW])[0].value == pytest.approx(expected(fitted, [ROW])[0])


def test_skops_file_with_types_skops_does_not_trust_is_refused(folder: Path) -> None:
    import skops.io
    from sklearn.preprocessing import FunctionTransformer

    path = folder / "custom.skops"
    skops.io.dump(FunctionTransformer(math.sqrt), path)
    schema = Schema((Feature("x", "number"),))
    with pytest.raises(InvalidArgument, match=r"math\.sqrt"):
        load_local("sklearn", LocalArtifact(path), schema, "regression")


def test_onnx_export_predicts_like_the_pipeline(
    folder: Path, fitted: Any, tables: tuple[Table, Table]
) -> None:
    reference, holdout = tables
    path = fm.save_onnx(fitted, folder / "model.onnx")
    schema = resolve_schema(None, reference, fm.TARGET)
    model = load_local("onnx", LocalArtifact(path), schema, None)
    prepared = prepare(model, reference, holdout, fm.TARGET)
    assert prepared.output_kind == "binary"
    rows = [ROW, ROW | {"plan": "basic", "region": "south"}]
    got = model.predict(rows)
    assert [p.value for p in got] == pytest.approx(list(expected(fitted, rows)), abs=1e-5)
    assert set(got[0].probabilities or {}) == {"0", "1"}
    assert prepared.metrics["auc"] > 0.7
    # Loaded by the inference service with the registered output kind.
    store = LocalArtifactStore(folder / "store")
    spec = VersionSpec("m", "1", "onnx", store.put(path.read_bytes()), schema, "binary")
    assert load_model(spec, store).predict(rows)[1].value == pytest.approx(got[1].value)


def test_onnx_single_matrix_input_and_regression(folder: Path, tables: tuple[Table, Table]) -> None:
    """An XGBoost/LightGBM/PyTorch-style export: one [n, k] float input, one output."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import Ridge

    reference = tables[0]
    names = ("x0", "x1", "x3")
    x = np.column_stack([reference.columns[n].astype(np.float64) for n in names])
    y = 2.0 * x[:, 0] - x[:, 1]
    ridge = Ridge(alpha=1e-6).fit(x, y)
    exported = to_onnx(ridge, initial_types=[("input", FloatTensorType([None, 3]))])
    path = folder / "ridge.onnx"
    path.write_bytes(exported.SerializeToString())
    schema = Schema(tuple(Feature(n, "number") for n in names))
    model = load_local("onnx", LocalArtifact(path), schema, None)
    assert model.output_kind == "regression"
    got = model.predict([{"x0": 1.0, "x1": 0.5, "x3": 7.0}])
    assert got[0].value == pytest.approx(1.5, abs=1e-4)
    # The schema must match the matrix's width.
    with pytest.raises(FailedPrecondition, match="3 columns"):
        load_local("onnx", LocalArtifact(path), Schema(schema.features[:2]), "regression")


def test_mlflow_directories(folder: Path, fitted: Any, tables: tuple[Table, Table]) -> None:
    reference, holdout = tables
    ref_file = fm.write_parquet(reference, folder / "reference.parquet")
    hold_file = fm.write_parquet(holdout, folder / "holdout.parquet")

    skops_dir = fm.save_mlflow_sklearn(fitted, folder / "mlflow-skops", reference, "skops")
    found = read_mlflow_model(skops_dir)
    assert (found.flavor, found.artifact.name) == ("sklearn", "model.skops")
    assert found.schema is not None and found.schema.names == (*fm.NUMBERS, *fm.CATEGORIES)
    assert found.schema.by_name["plan"].kind == "category"
    data, record = artifact_registration(
        skops_dir,
        model="churn",
        reference_data=ref_file,
        holdout=hold_file,
        target=fm.TARGET,
    )
    assert data == found.artifact.read_bytes()
    assert (record.flavor, record.pickle_trusted) == ("sklearn", False)
    assert record.tags["mlflow.serialization_format"] == "skops"
    assert {m.name for m in record.metrics} >= {"accuracy", "auc"}
    assert record.data.row_count == reference.rows and record.baseline.output.sample
    # The signature's x2 takes NaN, because the reference data holds NaN there.
    assert [f.allow_nan for f in record.schema.features if f.name == "x2"] == [True]

    pickled = fm.save_mlflow_sklearn(fitted, folder / "mlflow-pickle", reference, "cloudpickle")
    with pytest.raises(InvalidArgument, match="--trust-pickle"):
        artifact_registration(pickled, model="churn", reference_data=ref_file, target=fm.TARGET)
    _, trusted = artifact_registration(
        pickled, model="churn", reference_data=ref_file, target=fm.TARGET, trust_pickle=True
    )
    assert trusted.pickle_trusted and trusted.tags["mlflow.serialization_format"] == "cloudpickle"

    onnx_dir = fm.save_mlflow_onnx(fitted, folder / "mlflow-onnx")
    _, record = artifact_registration(
        onnx_dir, model="churn", reference_data=ref_file, target="churned"
    )
    assert (record.flavor, record.baseline.output.sample != []) == ("onnx", True)

    other = folder / "mlflow-pytorch"
    other.mkdir()
    (other / "MLmodel").write_text(
        "flavors:\n  pytorch: {model_data: data}\n  python_function: {}\n"
    )
    with pytest.raises(InvalidArgument, match=r"none driftloop serves \(onnx, sklearn\)"):
        read_mlflow_model(other)


def test_without_reference_data(folder: Path, fitted: Any) -> None:
    """A version without reference data is registered without a baseline; it needs its
    schema declared; an ONNX classifier needs its output kind."""
    skops_file = fm.save_skops(fitted, folder / "plain.skops")
    with pytest.raises(InvalidArgument, match="--schema"):
        artifact_registration(skops_file, model="churn", flavor="sklearn")
    schema = Schema(
        tuple(Feature(n, "number") for n in fm.NUMBERS)
        + tuple(Feature(n, "category") for n in fm.CATEGORIES)
    )
    _, record = artifact_registration(skops_file, model="churn", flavor="sklearn", schema=schema)
    assert not record.HasField("baseline") and not record.metrics
    assert record.output_kind != 0
    onnx_file = fm.save_onnx(fitted, folder / "plain.onnx")
    with pytest.raises(InvalidArgument, match="--output-kind"):
        artifact_registration(onnx_file, model="churn", flavor="onnx", schema=schema)
    _, record = artifact_registration(
        onnx_file, model="churn", flavor="onnx", schema=schema, output_kind="binary"
    )
    assert record.flavor == "onnx" and not record.HasField("baseline")
    with pytest.raises(InvalidArgument, match="holdout needs --target"):
        artifact_registration(
            skops_file,
            model="churn",
            flavor="sklearn",
            reference_data=folder / "r.parquet",
            holdout=folder / "h.parquet",
        )


def test_schema_mismatch_is_refused_before_registration(
    folder: Path, fitted: Any, tables: tuple[Table, Table]
) -> None:
    path = fm.save_skops(fitted, folder / "mismatch.skops")
    wrong = Schema((Feature("x0", "number"), Feature("age", "number")))
    with pytest.raises(FailedPrecondition, match=r"missing: .*plan"):
        load_local("sklearn", LocalArtifact(path), wrong, "binary")
    declared = Schema((Feature("x0", "category"),))
    with pytest.raises(InvalidArgument, match="declared a category"):
        resolve_schema(declared, tables[0], fm.TARGET)


def _torch_like(path: Path, weights: Any, head: str) -> Path:
    """What torch.onnx.export writes for a small network: one float [n, k] input named
    "input", one output "output" ([n, 1] after a sigmoid, or [n, C] after a softmax)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.asarray(weights, dtype=np.float32)
    nodes = [helper.make_node("MatMul", ["input", "w"], ["z"])]
    nodes.append(
        helper.make_node("Sigmoid", ["z"], ["output"])
        if head == "sigmoid"
        else helper.make_node("Softmax", ["z"], ["output"], axis=1)
    )
    graph = helper.make_graph(
        nodes,
        "torch_like",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", w.shape[0]])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", w.shape[1]])],
        initializer=[numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def test_onnx_network_exports_with_a_sigmoid_or_a_softmax(folder: Path) -> None:
    """A PyTorch-style binary classifier (a sigmoid column, declared binary: it looks like a
    regression otherwise) and a softmax multiclass one, with classes "0".."C-1"."""
    schema = Schema(tuple(Feature(n, "number") for n in ("a", "b")))
    row = {"a": 1.0, "b": -2.0}
    binary_file = _torch_like(folder / "sigmoid.onnx", [[0.5], [0.25]], "sigmoid")
    assert load_local("onnx", LocalArtifact(binary_file), schema, None).output_kind == (
        "regression"
    )
    binary = load_local("onnx", LocalArtifact(binary_file), schema, "binary")
    (p,) = binary.predict([row])
    assert p.value == pytest.approx(0.5) and p.label == "1"  # sigmoid(0.5 - 0.5) = 0.5
    assert p.probabilities == pytest.approx({"0": 0.5, "1": 0.5})
    softmax_file = _torch_like(folder / "softmax.onnx", [[1, 0, 0], [0, 0, 1]], "softmax")
    multiclass = load_local("onnx", LocalArtifact(softmax_file), schema, "multiclass")
    (p,) = multiclass.predict([row])
    e = np.exp([1.0, 0.0, -2.0])
    assert p.label == "0" and p.value == pytest.approx(float(e[0] / e.sum()), rel=1e-6)
    assert set(p.probabilities or {}) == {"0", "1", "2"}


def test_python_flavor_loads_here_only_to_predict_reference_data(folder: Path) -> None:
    """Without reference data its module need not import here (it is served elsewhere);
    with it, the model predicts the reference rows for the baseline."""
    artifact = folder / "factor.txt"
    artifact.write_text("2.0")
    schema = Schema((Feature("x", "number"), Feature("y", "number")))
    _, record = artifact_registration(
        artifact,
        model="scaled",
        flavor="python",
        schema=schema,
        output_kind="regression",
        entry_point="only_on_the_server:Model",
    )
    assert record.entry_point == "only_on_the_server:Model" and not record.HasField("baseline")
    reference = Table({"x": np.arange(50.0), "y": np.ones(50)})
    _, record = artifact_registration(
        artifact,
        model="scaled",
        flavor="python",
        output_kind="regression",
        entry_point="tests.user_model:Scaled",
        reference_data=fm.write_parquet(reference, folder / "xy.parquet"),
    )
    assert record.baseline.output.mean == pytest.approx(2.0 * (24.5 + 1.0))
