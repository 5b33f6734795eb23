"""What counts as an error once a prediction meets its label, defined once.

Classifiers: 1.0 when the predicted label differs from the true one, else 0.0 (a label
given as a number, 1.0, matches the predicted label "1"). Regression: the absolute error.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
TextArray = npt.NDArray[np.object_]
CLASSIFIERS = ("binary", "multiclass")


def _number_text(value: float) -> str:
    """A numeric label as a class name: 1.0 -> "1", 2.5 -> "2.5"."""
    return f"{value:g}"


def errors(
    kind: str,
    output_label: TextArray,
    output_value: FloatArray,
    truth_label: TextArray,
    truth_value: FloatArray,
    truth_is_label: npt.NDArray[np.bool_],
) -> FloatArray:
    """The error of each labelled prediction (see the module docstring)."""
    if kind in CLASSIFIERS:
        truth = [
            label if is_label else _number_text(value)
            for label, value, is_label in zip(truth_label, truth_value, truth_is_label, strict=True)
        ]
        mismatch = np.asarray(truth, dtype=object) != output_label
        return np.asarray(mismatch, dtype=np.float64)
    values = np.array(
        [
            _as_float(label) if is_label else value
            for label, value, is_label in zip(truth_label, truth_value, truth_is_label, strict=True)
        ],
        dtype=np.float64,
    )
    return np.asarray(np.abs(output_value - values), dtype=np.float64)


def _as_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("nan")
