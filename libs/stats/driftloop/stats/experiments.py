"""Two independent groups (A/B variants): difference of rates or means, and sample sizes.

Sign convention: every estimate is group b minus group a (b is the variant, a the control).

Proportions (`proportion_difference`). Each group's rate gets a Wilson score interval,
centre (p + z^2/2n) / (1 + z^2/n), half-width z / (1 + z^2/n) * sqrt(p q / n + z^2/4n^2),
which keeps its coverage near 0 and 1 where the Wald interval collapses. The interval of the
difference d = p_b - p_a is Newcombe's hybrid score interval (his method 10, 1998), built
from the two Wilson intervals (l, u):
    [d - sqrt((p_b - l_b)^2 + (u_a - p_a)^2),  d + sqrt((u_b - p_b)^2 + (p_a - l_a)^2)],
which has close to nominal coverage even with few successes. The test is the usual pooled
two-proportion z-test, z = d / sqrt(p (1 - p) (1/n_a + 1/n_b)) with p the pooled rate (the
2x2 chi-square without continuity correction is z^2). Near the 5% boundary the interval and
the test can disagree, because one is built from the score intervals and the other from the
pooled variance.

Clustered rows (`clustered_difference`). When one entity (a user, a device) contributes many
rows, rows are not independent and the per-row standard error is too small. The unit of
analysis becomes the cluster k with total y_k and row count n_k; the group mean is the ratio
estimator m = sum_k y_k / sum_k n_k and its delta-method (cluster-robust, linearised)
variance over K clusters is
    Var(m) = sum_k (y_k - m n_k)^2 / (K (K - 1) nbar^2),   nbar = sum_k n_k / K,
the standard formula for ratio metrics (Deng, Knoblich and Lu 2018, "Applying the delta
method in metric analytics"). With one row per cluster it is exactly s^2 / n, the usual
variance of a mean. The groups are independent (each entity sees one variant), so the
variance of m_b - m_a is the sum of the two; the interval and the test are normal (z). The
cluster ids of the two groups are read separately: an id present in both groups counts as
two clusters, which is right only if the assignment really is per entity.

Sample size (`required_sample_size`). Per group, for a two-sided two-proportion z-test at
level alpha to have the given power for an absolute difference delta = p_2 - p_1 (Fleiss,
Levin and Paik, "Statistical Methods for Rates and Proportions", without continuity
correction):
    n = (z_{1-alpha/2} sqrt(2 pbar qbar) + z_{power} sqrt(p_1 q_1 + p_2 q_2))^2 / delta^2,
with pbar the mean of p_1 and p_2, then multiplied by the design effect (the variance
inflation of clustered rows, 1 + (mean cluster size - 1) * ICC for equal clusters) and
rounded up.

Normal distribution without scipy: the CDF from math.erfc, the quantile from Acklam's
rational approximation (relative error 1.15e-9) refined by one Halley step on the erfc-based
CDF, which brings it to double precision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from driftloop.stats._types import Floats

_SQRT2 = math.sqrt(2.0)
_SQRT2PI = math.sqrt(2.0 * math.pi)

# Acklam's coefficients: central region, then both tails.
_A = (
    -3.969683028665376e01,
    2.209460984245205e02,
    -2.759285104469687e02,
    1.383577518672690e02,
    -3.066479806614716e01,
    2.506628277459239e00,
)
_B = (
    -5.447609879822406e01,
    1.615858368580409e02,
    -1.556989798598866e02,
    6.680131188771972e01,
    -1.328068155288572e01,
)
_C = (
    -7.784894002430293e-03,
    -3.223964580411365e-01,
    -2.400758277161838e00,
    -2.549732539343734e00,
    4.374664141464968e00,
    2.938163982698783e00,
)
_D = (
    7.784695709041462e-03,
    3.224671290700398e-01,
    2.445134137142996e00,
    3.754408661907416e00,
)
_P_LOW = 0.02425


def normal_cdf(x: float) -> float:
    """P(Z <= x) for a standard normal Z."""
    return 0.5 * math.erfc(-x / _SQRT2)


def normal_sf(x: float) -> float:
    """P(Z > x) for a standard normal Z, accurate far in the upper tail."""
    return 0.5 * math.erfc(x / _SQRT2)


def normal_two_sided_p(z: float) -> float:
    """P(|Z| >= |z|) for a standard normal Z."""
    if math.isnan(z):
        raise ValueError("z is NaN")
    return min(1.0, 2.0 * normal_sf(abs(z)))


def normal_quantile(p: float) -> float:
    """The x with P(Z <= x) = p, for 0 < p < 1 (Acklam plus one Halley step)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"a normal quantile needs 0 < p < 1, got {p}")
    if p < _P_LOW:
        q = math.sqrt(-2.0 * math.log(p))
        x = _tail(q)
    elif p <= 1.0 - _P_LOW:
        q = p - 0.5
        r = q * q
        numerator = (((((_A[0] * r + _A[1]) * r + _A[2]) * r + _A[3]) * r + _A[4]) * r + _A[5]) * q
        denominator = ((((_B[0] * r + _B[1]) * r + _B[2]) * r + _B[3]) * r + _B[4]) * r + 1.0
        x = numerator / denominator
    else:
        q = math.sqrt(-2.0 * math.log1p(-p))
        x = -_tail(q)
    # Halley step on f(x) = cdf(x) - p; in the upper tail the same step on the survival
    # function keeps the precision that 1 - p has lost.
    error = (1.0 - p) - normal_sf(x) if p > 0.5 else normal_cdf(x) - p
    u = error * _SQRT2PI * math.exp(x * x / 2.0)
    return x - u / (1.0 + x * u / 2.0)


def _tail(q: float) -> float:
    numerator = ((((_C[0] * q + _C[1]) * q + _C[2]) * q + _C[3]) * q + _C[4]) * q + _C[5]
    denominator = (((_D[0] * q + _D[1]) * q + _D[2]) * q + _D[3]) * q + 1.0
    return numerator / denominator


def two_sided_z(confidence: float) -> float:
    """The normal quantile z_{1 - (1 - confidence)/2} of a two-sided interval."""
    check_confidence(confidence)
    return normal_quantile(0.5 + confidence / 2.0)


def check_confidence(confidence: float) -> None:
    """Raise ValueError unless 0 < confidence < 1."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


@dataclass(frozen=True)
class GroupDifference:
    """Group b minus group a. `mean_a`/`mean_b` are the per-group rates (or ratio means) and
    `ci_a`/`ci_b` their intervals; `n_a`/`n_b` count rows and `units_a`/`units_b` the
    independent units (rows for proportions, clusters for clustered data)."""

    estimate: float
    ci_low: float
    ci_high: float
    z: float
    p_value: float
    mean_a: float
    mean_b: float
    ci_a: tuple[float, float]
    ci_b: tuple[float, float]
    n_a: int
    n_b: int
    units_a: int
    units_b: int
    method: str


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion."""
    _check_counts(successes, n, "")
    z = two_sided_z(confidence)
    p = successes / n
    z2n = z * z / n
    centre = (p + z2n / 2.0) / (1.0 + z2n)
    half = z / (1.0 + z2n) * math.sqrt(p * (1.0 - p) / n + z2n / (4.0 * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def proportion_difference(
    successes_a: int, n_a: int, successes_b: int, n_b: int, confidence: float = 0.95
) -> GroupDifference:
    """Rate of b minus rate of a: Newcombe hybrid score interval and pooled z-test."""
    _check_counts(successes_a, n_a, "_a")
    _check_counts(successes_b, n_b, "_b")
    check_confidence(confidence)
    p_a = successes_a / n_a
    p_b = successes_b / n_b
    low_a, high_a = wilson_interval(successes_a, n_a, confidence)
    low_b, high_b = wilson_interval(successes_b, n_b, confidence)
    estimate = p_b - p_a
    ci_low = estimate - math.hypot(p_b - low_b, high_a - p_a)
    ci_high = estimate + math.hypot(high_b - p_b, p_a - low_a)
    pooled = (successes_a + successes_b) / (n_a + n_b)
    se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n_a + 1.0 / n_b))
    # A zero pooled variance means both groups are all 0 or all 1: no difference at all.
    z = estimate / se if se > 0 else 0.0
    return GroupDifference(
        estimate=estimate,
        ci_low=max(-1.0, ci_low),
        ci_high=min(1.0, ci_high),
        z=z,
        p_value=normal_two_sided_p(z),
        mean_a=p_a,
        mean_b=p_b,
        ci_a=(low_a, high_a),
        ci_b=(low_b, high_b),
        n_a=n_a,
        n_b=n_b,
        units_a=n_a,
        units_b=n_b,
        method="two-proportion z-test, Newcombe hybrid score interval",
    )


def _check_counts(successes: int, n: int, suffix: str) -> None:
    if int(n) != n or int(successes) != successes:
        raise ValueError(f"successes{suffix} and n{suffix} must be integers")
    if n < 1:
        raise ValueError(f"n{suffix} must be at least 1, got {n}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes{suffix} must be in [0, n{suffix}], got {successes} of {n}")


@dataclass(frozen=True)
class _ClusteredMean:
    mean: float
    variance: float
    rows: int
    clusters: int


def _clustered_mean(values: ArrayLike, clusters: ArrayLike, name: str) -> _ClusteredMean:
    y: Floats = np.asarray(values, dtype=np.float64)
    ids = np.asarray(clusters)
    if y.ndim != 1 or ids.ndim != 1:
        raise ValueError(f"values_{name} and clusters_{name} must be 1-D")
    if y.shape != ids.shape:
        raise ValueError(
            f"values_{name} and clusters_{name} differ in length: {y.size} != {ids.size}"
        )
    if not np.all(np.isfinite(y)):
        raise ValueError(f"values_{name} contains NaN or infinite values")
    _, inverse = np.unique(ids, return_inverse=True)
    inverse = inverse.reshape(-1)
    totals = np.bincount(inverse, weights=y)
    sizes = np.bincount(inverse).astype(np.float64)
    k = totals.size
    if k < 2:
        raise ValueError(f"group {name} needs at least two clusters, got {k}")
    mean = float(totals.sum() / sizes.sum())
    mean_size = float(sizes.mean())
    residual = totals - mean * sizes
    variance = float(np.sum(residual * residual)) / (k * (k - 1) * mean_size * mean_size)
    return _ClusteredMean(mean, variance, int(y.size), k)


def clustered_difference(
    values_a: ArrayLike,
    clusters_a: ArrayLike,
    values_b: ArrayLike,
    clusters_b: ArrayLike,
    confidence: float = 0.95,
) -> GroupDifference:
    """Mean of b minus mean of a with clusters as the unit (ratio estimator, delta method).

    `clusters_a`/`clusters_b` are entity ids (strings or integers) aligned with the values.
    """
    check_confidence(confidence)
    a = _clustered_mean(values_a, clusters_a, "a")
    b = _clustered_mean(values_b, clusters_b, "b")
    zq = two_sided_z(confidence)
    estimate = b.mean - a.mean
    se = math.sqrt(a.variance + b.variance)
    # A zero se means every cluster sits exactly on its group's mean: the difference is exact.
    z = estimate / se if se > 0 else math.copysign(math.inf, estimate) if estimate else 0.0
    se_a = math.sqrt(a.variance)
    se_b = math.sqrt(b.variance)
    return GroupDifference(
        estimate=estimate,
        ci_low=estimate - zq * se,
        ci_high=estimate + zq * se,
        z=z,
        p_value=0.0 if math.isinf(z) else normal_two_sided_p(z),
        mean_a=a.mean,
        mean_b=b.mean,
        ci_a=(a.mean - zq * se_a, a.mean + zq * se_a),
        ci_b=(b.mean - zq * se_b, b.mean + zq * se_b),
        n_a=a.rows,
        n_b=b.rows,
        units_a=a.clusters,
        units_b=b.clusters,
        method="cluster-robust z-test (ratio estimator, delta method)",
    )


def required_sample_size(
    baseline_rate: float,
    min_effect: float,
    alpha: float = 0.05,
    power: float = 0.8,
    design_effect: float = 1.0,
) -> int:
    """Labelled rows per group for a two-sided two-proportion z-test to detect `min_effect`
    (absolute, either sign) from `baseline_rate`, times the design effect, rounded up."""
    p1 = baseline_rate
    p2 = baseline_rate + min_effect
    if not 0.0 < p1 < 1.0:
        raise ValueError(f"baseline_rate must be in (0, 1), got {baseline_rate}")
    if min_effect == 0 or not 0.0 < p2 < 1.0:
        raise ValueError(
            f"min_effect must be non-zero with baseline_rate + min_effect in (0, 1), "
            f"got {min_effect}"
        )
    if not 0.0 < alpha < 1.0 or not 0.0 < power < 1.0:
        raise ValueError("alpha and power must be in (0, 1)")
    if not design_effect >= 1.0:
        raise ValueError(f"design_effect must be at least 1, got {design_effect}")
    z_alpha = normal_quantile(1.0 - alpha / 2.0)
    z_power = normal_quantile(power)
    p_bar = (p1 + p2) / 2.0
    root = z_alpha * math.sqrt(2.0 * p_bar * (1.0 - p_bar)) + z_power * math.sqrt(
        p1 * (1.0 - p1) + p2 * (1.0 - p2)
    )
    n = root * root / (min_effect * min_effect) * design_effect
    # Guard the ceiling against a product that lands a rounding error above an integer.
    return math.ceil(n - 1e-9)
