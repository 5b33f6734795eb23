"""The heavy part of a run, done in a worker process: train the challenger and score both.

Everything here is CPU work on in-memory data (no I/O but reading verified artifacts), so
the retrainer runs it in a process pool and its event loop keeps serving gRPC and
consuming Kafka while a model fits. Inputs and outputs are plain picklable data.

- linear flavor: a fresh fit on the training slice (`train_linear`), deterministic for a
  snapshot and seed; the serving schema's NaN policy is kept.
- river flavor: the champion learns online: a copy of it is fed the training slice's
  labelled rows one by one in serving-time order (`learn_one`), as it would have learnt
  them from the stream, and is then pickled as the challenger.
Both are then scored on the holdout rows (the newest slice, unseen in training), with the
champion scored on the very same rows for the paired gate.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from driftloop.models import linear, river_flavor
from driftloop.models.artifacts import LocalArtifactStore
from driftloop.models.baseline import Baseline, categorical_baseline, numeric_baseline
from driftloop.models.loading import VersionSpec, load_model
from driftloop.models.metrics import classification_metrics, regression_metrics
from driftloop.models.schema import Model, OutputKind, Prediction, Row, Schema
from driftloop.models.table import Table
from driftloop.models.training import TrainingSpec, train_linear
from driftloop.retrainer.gate import Scored
from driftloop.retrainer.snapshot import Snapshot

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class TrainJob:
    snapshot: Snapshot
    target: str
    champion: VersionSpec
    artifacts_root: Path
    l2: float
    seed: int


@dataclass(frozen=True)
class TrainResult:
    flavor: str
    artifact: bytes
    schema: Schema
    metrics: dict[str, float]
    champion_metrics: dict[str, float]
    baseline: Baseline
    champion: Scored
    challenger: Scored
    training_rows: int
    holdout_rows: int


def rows_of(table: Table, schema: Schema) -> list[Row]:
    """The table's rows as the models take them (features only)."""
    columns = [(f.name, table.columns[f.name].tolist()) for f in schema.features]
    return [{name: values[i] for name, values in columns} for i in range(table.rows)]


def train_and_score(job: TrainJob) -> TrainResult:
    champion_spec = job.champion
    store = LocalArtifactStore(job.artifacts_root)
    champion = load_model(champion_spec, store)
    train = job.snapshot.train_table(job.target)
    holdout = job.snapshot.holdout_table(job.target)
    kind = champion_spec.output_kind
    challenger: Model
    baseline: Baseline | None
    if champion_spec.flavor == river_flavor.FLAVOR:
        challenger, artifact = _learn_online(
            champion_spec, store.get(champion_spec.artifact_sha256), train, job.target
        )
        schema = champion_spec.schema
        baseline = None
    else:
        spec = TrainingSpec(
            target=job.target,
            task=kind,
            l2=job.l2,
            seed=job.seed,
            features=champion_spec.schema.names,
        )
        trained = train_linear(train, spec, holdout=holdout, serving_schema=champion_spec.schema)
        challenger, artifact, schema = trained.model, trained.artifact, trained.model.schema
        baseline = trained.baseline
    holdout_rows = rows_of(holdout, champion_spec.schema)
    truth = holdout.columns[job.target]
    champion_scores, champion_metrics = score(champion, holdout_rows, truth, kind)
    challenger_scores, metrics = score(challenger, holdout_rows, truth, kind)
    if baseline is None:
        baseline = baseline_of(challenger, train, schema, metrics, job.seed)
    return TrainResult(
        flavor=champion_spec.flavor,
        artifact=artifact,
        schema=schema,
        metrics=metrics,
        champion_metrics=champion_metrics,
        baseline=baseline,
        champion=champion_scores,
        challenger=challenger_scores,
        training_rows=train.rows,
        holdout_rows=holdout.rows,
    )


def _learn_online(
    champion: VersionSpec, raw: bytes, train: Table, target: str
) -> tuple[river_flavor.RiverModel, bytes]:
    model = river_flavor.RiverModel.from_bytes(raw, champion.schema, champion.output_kind)
    rows = rows_of(train, champion.schema)
    truths = train.columns[target].tolist()
    convert = _truth_converter(model, rows[0] if rows else {}, champion.output_kind)
    for row, truth in zip(rows, truths, strict=True):
        model.learn(row, convert(truth))
    return model, river_flavor.RiverModel.to_bytes(model.estimator)


def _truth_converter(model: river_flavor.RiverModel, row: Row, kind: OutputKind) -> Any:
    """Labels arrive as text ("1"); a river classifier learnt with its own label type
    (True, 1, "1"): give it labels of the type it already knows."""
    if kind == "regression":
        return float
    known = list((model.estimator.predict_proba_one(dict(row)) or {}).keys()) if row else []
    if known and all(isinstance(k, bool) for k in known):
        return lambda label: label in ("1", "True", "true")
    if known and all(isinstance(k, int) for k in known):
        return int
    return str


def score(
    model: Model, rows: list[Row], truth: npt.NDArray[Any], kind: OutputKind
) -> tuple[Scored, dict[str, float]]:
    """The model's answers on labelled rows, and its metrics there."""
    predictions: list[Prediction] = model.predict(rows) if rows else []
    if kind == "regression":
        values = np.asarray([p.value for p in predictions], dtype=np.float64)
        return Scored(values=values), regression_metrics(truth.astype(np.float64), values)
    labels = np.asarray([p.label for p in predictions], dtype=np.str_)
    truth_text = truth.astype(np.str_)
    probability = np.asarray(
        [
            (p.probabilities or {}).get(t, 0.0)
            for p, t in zip(predictions, truth_text.tolist(), strict=True)
        ],
        dtype=np.float64,
    )
    classes = sorted(set(truth_text.tolist()) | set(labels.tolist()))
    matrix = np.asarray(
        [[(p.probabilities or {}).get(c, 0.0) for c in classes] for p in predictions],
        dtype=np.float64,
    ).reshape(len(predictions), len(classes))
    index = {c: i for i, c in enumerate(classes)}
    y = np.asarray([index[t] for t in truth_text.tolist()], dtype=np.int64)
    metrics = classification_metrics(y, matrix) if len(classes) >= 2 and rows else {}
    metrics["accuracy"] = float((labels == truth_text).mean()) if rows else float("nan")
    return Scored(labels=labels, truth_probability=probability), metrics


def baseline_of(
    model: Model, train: Table, schema: Schema, metrics: dict[str, float], seed: int
) -> Baseline:
    """The drift baseline of a model that is not trained by `train_linear`."""
    rng = np.random.default_rng(seed)
    numeric, categorical = [], []
    for feature in schema.features:
        column = train.columns[feature.name]
        if feature.kind == "number":
            numeric.append(numeric_baseline(feature.name, column.astype(np.float64), rng))
        else:
            categorical.append(categorical_baseline(feature.name, column.astype(np.str_)))
    predictions = model.predict(rows_of(train, schema)) if train.rows else []
    scores = np.asarray([p.value for p in predictions], dtype=np.float64)
    labels = np.asarray([p.label for p in predictions], dtype=np.str_)
    return Baseline(
        numeric=numeric,
        categorical=categorical,
        output=numeric_baseline("output", scores, rng),
        output_labels=None
        if model.output_kind == "regression"
        else categorical_baseline("output", labels),
        holdout_metrics=metrics,
    )


FLAVORS_TRAINED = (linear.FLAVOR, river_flavor.FLAVOR)
