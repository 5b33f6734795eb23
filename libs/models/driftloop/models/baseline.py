"""The drift baseline of a model version, frozen from its training data at registration.

Numbers: interior bin edges at the training deciles (duplicates dropped), the reference
share of each bin, a sorted reference sample for the KS test, mean, std and NaN share.
Categories: reference shares. Output: the same, for the score. Bins are
(-inf, e0], (e0, e1], ..., (e_last, inf): a window counts its values into the same bins,
so every window compares with every other window.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from driftloop.models.schema import Schema

FloatArray = npt.NDArray[np.float64]
DEFAULT_BINS = 10
DEFAULT_SAMPLE = 2000


@dataclass(frozen=True)
class NumericBaseline:
    feature: str
    edges: list[float]
    frequencies: list[float]
    sample: list[float]
    mean: float
    std: float
    nan_share: float


@dataclass(frozen=True)
class CategoricalBaseline:
    feature: str
    categories: list[str]
    frequencies: list[float]


@dataclass(frozen=True)
class Baseline:
    numeric: list[NumericBaseline] = field(default_factory=list)
    categorical: list[CategoricalBaseline] = field(default_factory=list)
    output: NumericBaseline | None = None
    output_labels: CategoricalBaseline | None = None
    holdout_metrics: dict[str, float] = field(default_factory=dict)


def bin_counts(values: FloatArray, edges: list[float]) -> npt.NDArray[np.int64]:
    """Counts of finite values in the frozen bins (len(edges) + 1 of them)."""
    finite = values[~np.isnan(values)]
    index = np.searchsorted(np.asarray(edges, dtype=np.float64), finite, side="left")
    return np.bincount(index, minlength=len(edges) + 1).astype(np.int64)


def numeric_baseline(
    feature: str,
    values: FloatArray,
    rng: np.random.Generator,
    bins: int = DEFAULT_BINS,
    sample_size: int = DEFAULT_SAMPLE,
) -> NumericBaseline:
    finite = values[~np.isnan(values)]
    if finite.size == 0:
        return NumericBaseline(feature, [], [1.0], [], float("nan"), float("nan"), 1.0)
    quantiles = np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1])
    edges = [float(edge) for edge in np.unique(quantiles)]
    counts = bin_counts(finite, edges)
    sample = (
        finite if finite.size <= sample_size else rng.choice(finite, sample_size, replace=False)
    )
    return NumericBaseline(
        feature=feature,
        edges=edges,
        frequencies=[float(c) for c in counts / counts.sum()],
        sample=[float(v) for v in np.sort(sample)],
        mean=float(finite.mean()),
        std=float(finite.std()),
        nan_share=float(1.0 - finite.size / values.size),
    )


def categorical_baseline(feature: str, values: npt.NDArray[np.str_]) -> CategoricalBaseline:
    counts = Counter(values.tolist())
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    total = sum(counts.values())
    return CategoricalBaseline(
        feature, [name for name, _ in ordered], [count / total for _, count in ordered]
    )


def reference_baseline(
    schema: Schema,
    columns: Mapping[str, npt.NDArray[Any]],
    scores: FloatArray,
    labels: npt.NDArray[np.str_] | None,
    holdout_metrics: dict[str, float],
    rng: np.random.Generator,
) -> Baseline:
    """The baseline of reference data: each feature's column, the model's score on each
    row (P(positive), the top class's probability, or the value) and, for a classifier,
    its predicted labels."""
    numeric, categorical = [], []
    for feature in schema.features:
        column = columns[feature.name]
        if feature.kind == "number":
            numeric.append(numeric_baseline(feature.name, column.astype(np.float64), rng))
        else:
            categorical.append(categorical_baseline(feature.name, column.astype(np.str_)))
    return Baseline(
        numeric=numeric,
        categorical=categorical,
        output=numeric_baseline("output", scores.astype(np.float64), rng),
        output_labels=None if labels is None else categorical_baseline("output", labels),
        holdout_metrics=holdout_metrics,
    )
