"""What the flavors of models trained elsewhere share: rows as columns, and a batch of
scores (probabilities per class, or values) as predictions.

A foreign model scores columns, not rows: one call per request batch and one call over a
whole reference table at registration go through the same code. Class labels are the
model's own classes as text (a whole number without its .0, so 1 and 1.0 are both "1", as
the label events write them); for a binary model the second class is the positive one
(scikit-learn's `classes_` order, an ONNX export's probability columns).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from driftloop.models.schema import OutputKind, Prediction, Row, Schema

FloatArray = npt.NDArray[np.float64]
Columns = dict[str, npt.NDArray[np.float64] | npt.NDArray[np.str_]]


@dataclass(frozen=True)
class Scores:
    """regression: `values` (n); classifiers: `values` (n x classes) probabilities, their
    columns in the order of `classes`."""

    values: FloatArray
    classes: tuple[str, ...] = ()

    @property
    def is_classifier(self) -> bool:
        return bool(self.classes)


def label_of(value: object) -> str:
    """A class as text: whole numbers without a trailing .0 (1 and 1.0 are both "1"), other
    numbers as Python writes them, everything else as str()."""
    if isinstance(value, bool | np.bool_):
        return "1" if value else "0"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        number = float(value)
        return str(int(number)) if number.is_integer() else repr(number)
    return str(value)


def columns_of(rows: Sequence[Row], schema: Schema) -> Columns:
    """The schema's features as columns: float64 for numbers, str for categories."""
    columns: Columns = {}
    for feature in schema.features:
        values = [row[feature.name] for row in rows]
        columns[feature.name] = (
            np.asarray(values, dtype=np.float64)
            if feature.kind == "number"
            else np.asarray(values, dtype=np.str_)
        )
    return columns


def inferred_kind(scores: Scores) -> OutputKind:
    if not scores.is_classifier:
        return "regression"
    return "binary" if len(scores.classes) == 2 else "multiclass"


def predictions(scores: Scores, kind: OutputKind) -> list[Prediction]:
    """One Prediction per row: binary value = P(positive class), multiclass value = the
    top class's probability, regression value = the value."""
    if kind == "regression":
        return [Prediction(value=float(v)) for v in np.asarray(scores.values).reshape(-1)]
    classes = scores.classes
    out = []
    for row in scores.values.tolist():
        probabilities = dict(zip(classes, row, strict=True))
        if kind == "binary":
            p = row[1]
            out.append(
                Prediction(
                    value=p,
                    label=classes[1] if p >= 0.5 else classes[0],
                    probabilities=probabilities,
                )
            )
        else:
            best = max(range(len(row)), key=row.__getitem__)
            out.append(
                Prediction(value=row[best], label=classes[best], probabilities=probabilities)
            )
    return out


def output_scores(scores: Scores, kind: OutputKind) -> FloatArray:
    """The score the drift baseline and the prediction log keep per row (Prediction.value)."""
    if kind == "regression":
        return np.asarray(scores.values, dtype=np.float64).reshape(-1)
    if kind == "binary":
        return np.asarray(scores.values[:, 1], dtype=np.float64)
    return np.asarray(scores.values.max(axis=1), dtype=np.float64)
