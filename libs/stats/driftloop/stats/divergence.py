"""Divergences between binned distributions (PSI, KL, Jensen-Shannon), one value per feature row.

Inputs are counts or shares over the same bins: each row is first divided by its sum, so
counts and shares give the same result. Both sides are then smoothed with

    s_i = (p_i + eps) / (1 + eps * k)        (k bins, eps = 1e-4 by default)

An empty bin would otherwise make ln(q/p) infinite, and the smoothed vector still sums to 1,
so it remains a distribution. The `*_rows` forms take 2-D arrays (features x bins, every
row with the same bins count) and return one value per row; the scalar forms take 1-D
arrays and are the single-row case.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike

from driftloop.stats._types import Floats
from driftloop.stats.bins import bin_counts

EPS = 1e-4
PSI_MODERATE = 0.1
"""PSI at or above this is a moderate shift."""
PSI_MAJOR = 0.2
"""PSI at or above this is a major shift."""


def to_shares(counts: ArrayLike) -> Floats:
    """Each row (last axis) divided by its sum; ValueError on negative, non-finite or empty rows."""
    array = np.asarray(counts, dtype=np.float64)
    if array.ndim not in (1, 2) or array.shape[-1] == 0:
        raise ValueError(f"expected a non-empty 1-D or 2-D array, got shape {array.shape}")
    if not np.all(np.isfinite(array)) or np.any(array < 0):
        raise ValueError("counts and shares must be finite and non-negative")
    totals: Floats = array.sum(axis=-1, keepdims=True)
    if np.any(totals <= 0):
        raise ValueError("every row needs a positive total")
    return array / totals


def smooth(shares: ArrayLike, eps: float = EPS) -> Floats:
    """(p + eps) / (1 + eps * k) along the last axis of k bins; rows that sum to 1 still do.
    eps = 0 leaves the shares as they are (fine for Jensen-Shannon, whose mixture is never
    empty where a side is not; PSI and KL are then infinite on an empty bin)."""
    if not eps >= 0:
        raise ValueError("eps must not be negative")
    p = np.asarray(shares, dtype=np.float64)
    bins: int = p.shape[-1]
    return (p + eps) / (1.0 + eps * bins)


def _smoothed_pair(p: ArrayLike, q: ArrayLike, eps: float) -> tuple[Floats, Floats]:
    p_rows = smooth(to_shares(np.atleast_2d(np.asarray(p, dtype=np.float64))), eps)
    q_rows = smooth(to_shares(np.atleast_2d(np.asarray(q, dtype=np.float64))), eps)
    if p_rows.shape != q_rows.shape:
        raise ValueError(f"shapes differ: {p_rows.shape} and {q_rows.shape}")
    return p_rows, q_rows


def _row_sums(terms: Floats) -> Floats:
    sums: Floats = terms.sum(axis=1)
    return sums


def _kl_nats(p: Floats, q: Floats) -> Floats:
    # 0 * ln(0 / q) is 0: an empty bin adds nothing (only unsmoothed shares have them).
    ratio = np.divide(p, q, out=np.ones_like(p), where=p > 0)
    return _row_sums(p * np.log(ratio))


def psi_rows(reference: ArrayLike, current: ArrayLike, eps: float = EPS) -> Floats:
    """Population stability index per row: sum((q - p) * ln(q / p)), p reference, q current."""
    p, q = _smoothed_pair(reference, current, eps)
    return _row_sums((q - p) * np.log(q / p))


def kl_rows(p: ArrayLike, q: ArrayLike, eps: float = EPS) -> Floats:
    """Kullback-Leibler divergence KL(p || q) per row, in nats."""
    return _kl_nats(*_smoothed_pair(p, q, eps))


def js_divergence_rows(p: ArrayLike, q: ArrayLike, eps: float = EPS) -> Floats:
    """Jensen-Shannon divergence per row, in bits, so within [0, 1]."""
    p_rows, q_rows = _smoothed_pair(p, q, eps)
    m = (p_rows + q_rows) / 2.0
    bits = (_kl_nats(p_rows, m) + _kl_nats(q_rows, m)) / (2.0 * math.log(2.0))
    # Rounding can leave identical rows a hair below 0, where the distance's sqrt is NaN.
    return np.clip(bits, 0.0, 1.0)


def js_distance_rows(p: ArrayLike, q: ArrayLike, eps: float = EPS) -> Floats:
    """Jensen-Shannon distance per row: the square root of the divergence in bits."""
    return np.sqrt(js_divergence_rows(p, q, eps))


def _single(
    rows: Callable[[ArrayLike, ArrayLike, float], Floats], p: ArrayLike, q: ArrayLike, eps: float
) -> float:
    p_array, q_array = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    if p_array.ndim != 1 or q_array.ndim != 1:
        raise ValueError("expected 1-D arrays; use the *_rows form for several features")
    return float(rows(p_array, q_array, eps)[0])


def psi(reference: ArrayLike, current: ArrayLike, eps: float = EPS) -> float:
    """Population stability index of one feature (see `psi_rows`)."""
    return _single(psi_rows, reference, current, eps)


def kl(p: ArrayLike, q: ArrayLike, eps: float = EPS) -> float:
    """KL(p || q) of one feature, in nats."""
    return _single(kl_rows, p, q, eps)


def js_divergence(p: ArrayLike, q: ArrayLike, eps: float = EPS) -> float:
    """Jensen-Shannon divergence of one feature, in bits."""
    return _single(js_divergence_rows, p, q, eps)


def js_distance(p: ArrayLike, q: ArrayLike, eps: float = EPS) -> float:
    """Jensen-Shannon distance of one feature (square root of the divergence in bits)."""
    return _single(js_distance_rows, p, q, eps)


def output_distance(reference: ArrayLike, current: ArrayLike, bins: int = 10) -> float:
    """Jensen-Shannon distance (bits, unsmoothed, in [0, 1]) of two samples of a model's
    output on fixed bins: tenths of [0, 1] when both are probabilities, else the reference
    sample's nearest-rank deciles. Fixed bins keep two nearly equal outputs in one bin
    (bins spanning the observed range would split them). 0 when a sample is empty."""
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    if ref.size == 0 or cur.size == 0:
        return 0.0
    if min(ref.min(), cur.min()) >= 0.0 and max(ref.max(), cur.max()) <= 1.0:
        edges = np.arange(1, bins) / bins
    else:
        edges = np.unique(np.sort(ref)[ref.size * np.arange(1, bins) // bins])
    return js_distance(bin_counts(ref, edges), bin_counts(cur, edges), eps=0.0)
