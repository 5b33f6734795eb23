"""Holdout metrics: pure numpy, no I/O."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def roc_auc(y: IntArray, score: FloatArray) -> float:
    """Area under the ROC curve by the rank statistic (ties get their mean rank)."""
    positives = int(y.sum())
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score))
    sorted_scores = score[order]
    i = 0
    while i < len(score):
        j = i
        while j + 1 < len(score) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[y == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def classification_metrics(y: IntArray, probabilities: FloatArray) -> dict[str, float]:
    """y: class indices; probabilities: n x K (binary: n x 2)."""
    eps = 1e-15
    chosen = probabilities[np.arange(len(y)), y]
    metrics = {
        "accuracy": float((probabilities.argmax(axis=1) == y).mean()),
        "log_loss": float(-np.log(np.clip(chosen, eps, 1.0)).mean()),
    }
    if probabilities.shape[1] == 2:
        metrics["auc"] = roc_auc(y, probabilities[:, 1])
        metrics["brier"] = float(((probabilities[:, 1] - y) ** 2).mean())
    return metrics


def regression_metrics(y: FloatArray, predicted: FloatArray) -> dict[str, float]:
    error = predicted - y
    variance = float(((y - y.mean()) ** 2).sum())
    return {
        "rmse": float(np.sqrt((error**2).mean())),
        "mae": float(np.abs(error).mean()),
        "r2": float(1.0 - (error**2).sum() / variance) if variance > 0 else float("nan"),
    }
