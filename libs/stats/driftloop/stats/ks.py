"""Two-sample Kolmogorov-Smirnov test of a current sample against a frozen sorted reference.

The statistic D = sup_x |F_ref(x) - F_cur(x)| is exact (ties included). It can be computed
from the samples (`ks_statistic`) or, for a database that holds the current window, from
two counts per reference point (`ks_from_counts`). The p-value is asymptotic: the
Kolmogorov distribution at sqrt(n m / (n + m)) * D, good once both samples have a few
hundred values.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from driftloop.stats._types import Counts, Floats

_MAX_TERMS = 100


def _sample(values: ArrayLike, name: str) -> Floats:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sample")
    if np.any(np.isnan(array)):
        raise ValueError(f"{name} contains NaN")
    return array


def _sorted_reference(reference_sorted: ArrayLike) -> Floats:
    reference = _sample(reference_sorted, "reference")
    if np.any(reference[1:] < reference[:-1]):
        raise ValueError("reference must be sorted ascending")
    return reference


def ks_statistic(reference_sorted: ArrayLike, current: ArrayLike) -> float:
    """Exact two-sample D between the sorted reference and the current sample."""
    reference = _sorted_reference(reference_sorted)
    ordered = np.sort(_sample(current, "current"))
    # Both ECDFs are right-continuous steps that jump only at sample points, so the
    # supremum is reached at one of them.
    points = np.concatenate([reference, ordered])
    f_reference = np.searchsorted(reference, points, side="right") / reference.size
    f_current = np.searchsorted(ordered, points, side="right") / ordered.size
    return float(np.max(np.abs(f_reference - f_current)))


def ks_counts(reference_sorted: ArrayLike, current: ArrayLike) -> tuple[Counts, Counts]:
    """Count of current values < r_i and <= r_i at each reference point r_i.

    This is what a database computes over the current window to feed `ks_from_counts`.
    """
    reference = _sorted_reference(reference_sorted)
    ordered = np.sort(_sample(current, "current"))
    below = np.searchsorted(ordered, reference, side="left").astype(np.int64)
    at_or_below = np.searchsorted(ordered, reference, side="right").astype(np.int64)
    return below, at_or_below


def ks_from_counts(
    reference_sorted: ArrayLike, below: ArrayLike, at_or_below: ArrayLike, n_current: int
) -> float:
    """Exact D from the counts of current values < r_i and <= r_i at every reference point.

    Equal to `ks_statistic` on the same data, ties included.
    """
    reference = _sorted_reference(reference_sorted)
    below_counts = np.asarray(below, dtype=np.int64)
    at_counts = np.asarray(at_or_below, dtype=np.int64)
    if below_counts.shape != reference.shape or at_counts.shape != reference.shape:
        raise ValueError("expected one count of each kind per reference point")
    if n_current <= 0:
        raise ValueError("the current sample is empty")
    if (
        np.any(below_counts < 0)
        or np.any(at_counts < below_counts)
        or np.any(at_counts > n_current)
    ):
        raise ValueError("counts must satisfy 0 <= below <= at_or_below <= n_current")
    n = reference.size
    # F_ref is constant on [r_prev, r_i), where F_cur climbs to below_i / n_current just
    # left of r_i; at r_i itself F_ref jumps to its tie-inclusive value. These two
    # comparisons per point therefore cover every step of both ECDFs, ties included.
    f_reference_before = np.searchsorted(reference, reference, side="left") / n
    f_reference_at = np.searchsorted(reference, reference, side="right") / n
    before = np.abs(f_reference_before - below_counts / n_current)
    at = np.abs(f_reference_at - at_counts / n_current)
    return float(max(before.max(), at.max()))


def kolmogorov_sf(x: float) -> float:
    """P(K > x) for the asymptotic Kolmogorov distribution K (scipy's kstwobign)."""
    if x <= 0:
        return 1.0
    if x < 1.0:
        return 1.0 - _kolmogorov_cdf_theta(x)
    return _kolmogorov_sf_alternating(x)


def _kolmogorov_cdf_theta(x: float) -> float:
    # sqrt(2 pi)/x * sum exp(-(2k-1)^2 pi^2 / (8 x^2)): the theta-function form, which
    # converges in a few terms for small x where the alternating series does not.
    scale = -(math.pi**2) / (8.0 * x * x)
    total = 0.0
    for k in range(1, _MAX_TERMS):
        term = math.exp((2 * k - 1) ** 2 * scale)
        total += term
        if term <= total * 1e-17:
            break
    return math.sqrt(2.0 * math.pi) / x * total


def _kolmogorov_sf_alternating(x: float) -> float:
    # 2 sum (-1)^(k-1) exp(-2 k^2 x^2): terms fall faster than geometrically once x >= 1.
    total = 0.0
    for k in range(1, _MAX_TERMS):
        term = math.exp(-2.0 * k * k * x * x)
        total += term if k % 2 else -term
        if term <= total * 1e-17:
            break
    return 2.0 * total


def ks_p_value(d: float, n: int, m: int) -> float:
    """Asymptotic p-value of D for samples of n and m values: kolmogorov_sf(sqrt(nm/(n+m)) D)."""
    if n <= 0 or m <= 0:
        raise ValueError("sample sizes must be positive")
    if not 0.0 <= d <= 1.0:
        raise ValueError("D must lie in [0, 1]")
    return kolmogorov_sf(math.sqrt(n * m / (n + m)) * d)
