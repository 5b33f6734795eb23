"""Registering a model trained elsewhere (any flavor but linear): its schema, output kind,
drift baseline and holdout metrics, from the reference data its registrant passes.

The schema is, in this order: the one given explicitly; the MLflow signature's; the
reference data's columns (the target excluded: numbers, and categories with the values
seen). With reference data, a number column holding NaN accepts NaN, and a declared
feature must be a column of it, of its kind. The output kind is the one given, else the
model's (a scikit-learn classifier's classes, an ONNX export's probability output).

The model is loaded here, before anything is uploaded, exactly as the inference service
will load it, so a version that cannot load or does not fit its schema is never
registered. It then predicts every reference row: the baseline keeps the feature columns
and its scores. Holdout metrics come from its predictions on the holdout file (its
`target` column holds the truth). Without reference data a version is still registered
and served; it has no baseline, and its drift reports say so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from driftloop.kit.errors import InvalidArgument
from driftloop.models import onnx_flavor, sklearn_flavor
from driftloop.models.artifacts import sha256_of
from driftloop.models.baseline import Baseline, reference_baseline
from driftloop.models.linear import FLAVOR as LINEAR
from driftloop.models.loading import FLAVORS, VersionSpec, load_model
from driftloop.models.metrics import classification_metrics, regression_metrics
from driftloop.models.schema import Model, OutputKind, Prediction, Row, Schema
from driftloop.models.scores import label_of
from driftloop.models.table import Table
from driftloop.models.training import infer_schema

BATCH = 1000


@dataclass(frozen=True)
class Reference:
    """What registration records of a foreign model besides its artifact."""

    schema: Schema
    output_kind: OutputKind
    baseline: Baseline | None
    metrics: dict[str, float]
    rows: int
    data_sha256: str


class LocalArtifact:
    """The ArtifactSource of one local file, to load an artifact before it is uploaded."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data = path.read_bytes()
        self.sha256 = sha256_of(self.data)

    def get(self, digest: str) -> bytes:
        return self.data

    def verified_path(self, digest: str) -> Path:
        return self.path


def resolve_schema(declared: Schema | None, reference: Table | None, target: str | None) -> Schema:
    """The declared schema checked against (and its NaN policy taken from) the reference
    data, else the reference data's own."""
    if reference is None:
        if declared is None:
            raise InvalidArgument(
                "schema",
                "a model trained elsewhere needs its input schema: pass --schema, or "
                "--reference-data to take it from the data's columns",
            )
        return declared
    if target is not None and target not in reference.columns:
        raise InvalidArgument("target", f"no column {target!r} in the reference data")
    if declared is None:
        return infer_schema(reference, tuple(n for n in reference.columns if n != target))
    seen = infer_schema(
        reference, tuple(f.name for f in declared.features if f.name in reference.columns)
    )
    features = []
    for feature in declared.features:
        column = seen.by_name.get(feature.name)
        if column is None:
            raise InvalidArgument(f"schema.{feature.name}", "not a column of the reference data")
        if column.kind != feature.kind:
            raise InvalidArgument(
                f"schema.{feature.name}",
                f"declared a {feature.kind}, but the reference data holds {column.kind}s",
            )
        features.append(column)
    return Schema(tuple(features))


def load_local(
    flavor: str,
    artifact: LocalArtifact,
    schema: Schema,
    output_kind: OutputKind | None,
    entry_point: str = "",
    pickle_trusted: bool = False,
) -> Model:
    """The model as the inference service will load it (the output kind inferred where the
    flavor can tell)."""
    if flavor not in FLAVORS or flavor == LINEAR:
        raise InvalidArgument(
            "flavor", f"must be one of {', '.join(f for f in FLAVORS if f != LINEAR)}"
        )
    if flavor == sklearn_flavor.FLAVOR:
        sklearn_flavor.check_trust(artifact.data, pickle_trusted, "trust_pickle")
        if output_kind is None:
            return sklearn_flavor.SklearnModel.from_bytes(artifact.data, schema, None, True)
    if flavor == onnx_flavor.FLAVOR and output_kind is None:
        return onnx_flavor.OnnxModel(artifact.data, schema, None)
    if output_kind is None:
        raise InvalidArgument("output_kind", f"the {flavor} flavor needs --output-kind")
    spec = VersionSpec(
        model="",
        version="0",
        flavor=flavor,
        artifact_sha256=artifact.sha256,
        schema=schema,
        output_kind=output_kind,
        entry_point=entry_point,
        pickle_trusted=pickle_trusted,
    )
    return load_model(spec, artifact)


def prepare(
    model: Model,
    reference: Table | None,
    holdout: Table | None,
    target: str | None,
    seed: int = 0,
) -> Reference:
    """Baseline and holdout metrics of a loaded model (none without reference data)."""
    check_options(reference is not None, holdout is not None, target)
    if reference is None:
        if isinstance(model, onnx_flavor.OnnxModel) and not model.kind_known:
            raise InvalidArgument(
                "output_kind",
                "the ONNX classifier's classes show only when it predicts: pass "
                "--output-kind binary or multiclass, or --reference-data",
            )
        return Reference(model.schema, model.output_kind, None, {}, 0, "")
    predicted = _predict(model, reference)
    metrics: dict[str, float] = {}
    if holdout is not None and target is not None:
        if target not in holdout.columns:
            raise InvalidArgument("target", f"no column {target!r} in the holdout data")
        metrics = _metrics(model, _predict(model, holdout), holdout.columns[target])
    scores = np.asarray([p.value for p in predicted], dtype=np.float64)
    labels = (
        None
        if model.output_kind == "regression"
        else np.asarray([p.label for p in predicted], dtype=np.str_)
    )
    baseline = reference_baseline(
        model.schema,
        reference.columns,
        scores,
        labels,
        metrics,
        np.random.default_rng(seed),
    )
    return Reference(
        model.schema,
        model.output_kind,
        baseline,
        metrics,
        reference.rows,
        reference.content_sha256(),
    )


def check_options(reference: bool, holdout: bool, target: str | None) -> None:
    if holdout and target is None:
        raise InvalidArgument("target", "--holdout needs --target, the column with the truth")
    if holdout and not reference:
        raise InvalidArgument("holdout", "a holdout needs --reference-data too")


def rows_of(table: Table, schema: Schema) -> list[Row]:
    columns = [(f.name, table.columns[f.name].tolist()) for f in schema.features]
    return [{name: values[i] for name, values in columns} for i in range(table.rows)]


def _predict(model: Model, table: Table) -> list[Prediction]:
    missing = [name for name in model.schema.names if name not in table.columns]
    if missing:
        raise InvalidArgument(
            f"data.{missing[0]}", "a feature of the schema is not a column of the data"
        )
    rows = rows_of(table, model.schema)
    model.schema.validate(rows, max_rows=len(rows), path="data")
    out: list[Prediction] = []
    for start in range(0, len(rows), BATCH):
        out += model.predict(rows[start : start + BATCH])
    return out


def _classes(model: Model, predicted: Sequence[Prediction]) -> tuple[str, ...]:
    """The model's classes in its order (binary: negative, positive)."""
    classes: tuple[str, ...] = tuple(getattr(model, "classes", ()))
    if classes:
        return classes
    if model.output_kind == "binary":
        return ("0", "1")
    return tuple(sorted({c for p in predicted for c in p.probabilities or {}}))


def _metrics(model: Model, predicted: Sequence[Prediction], truth: Any) -> dict[str, float]:
    if model.output_kind == "regression":
        if truth.dtype.kind != "f":
            raise InvalidArgument("target", "a regression's target column must hold numbers")
        return regression_metrics(
            truth.astype(np.float64), np.asarray([p.value for p in predicted])
        )
    classes = _classes(model, predicted)
    index = {name: i for i, name in enumerate(classes)}
    y = []
    for value in truth.tolist():
        name = label_of(value)
        if name not in index:
            raise InvalidArgument(
                "target", f"label {name!r} is not a class of the model ({', '.join(classes)})"
            )
        y.append(index[name])
    if model.output_kind == "binary":
        p = np.asarray([prediction.value for prediction in predicted], dtype=np.float64)
        probabilities = np.column_stack([1.0 - p, p])
    else:
        probabilities = np.asarray(
            [[(p.probabilities or {}).get(c, 0.0) for c in classes] for p in predicted],
            dtype=np.float64,
        )
    return classification_metrics(np.asarray(y, dtype=np.int64), probabilities)
