"""Paired comparison of two models scored on the same rows (champion a, challenger b).

Sign convention, the same for every function here: a positive effect means the second model
(b: the challenger, the shadow) is better. For correctness that is accuracy(b) - accuracy(a);
for losses it is mean(loss_a - loss_b). `statistic` is signed the same way.

Pairing matters: both models see the same rows, so most of the row-to-row variation cancels
in the per-row difference, and a paired test detects a difference that two independent
samples of the same size would miss.

`mcnemar`: for right/wrong outcomes only the discordant rows carry information, b01 (a wrong,
b right) and b10 (a right, b wrong). Under no difference b01 ~ Binomial(b01 + b10, 1/2); the
exact two-sided p-value is min(1, 2 P(X <= min(b01, b10))), 1 when there is no discordant
row. The binomial CDF is the regularised incomplete beta, P(X <= k) = I_{1/2}(m - k, k + 1),
evaluated by Lentz's continued fraction (Numerical Recipes' betacf) to double precision, so a
large number of discordant rows costs microseconds. The effect (b01 - b10) / n has the Wald
interval with the Agresti-Min adjustment (2005): add 1/2 to each of the four cells, so with
n' = n + 2, p01 = (b01 + 1/2)/n', p10 = (b10 + 1/2)/n' and d' = p01 - p10 the interval is
d' +- z sqrt((p01 + p10 - d'^2) / n'), clipped to [-1, 1]. The plain Wald interval has
zero width with no discordant rows and under-covers with few; the adjustment fixes both at
no cost (Agresti and Min, Statistics in Medicine 24, 2005). Note that the interval is
centred on the adjusted d', not exactly on the reported effect. `statistic` is b01 - b10.

`wilcoxon_signed_rank`: on d = loss_a - loss_b, zero differences are dropped (Wilcoxon's
method), |d| ranked with average ranks for ties, W+ the rank sum of the positive d. With m
non-zero pairs, E[W+] = m(m+1)/4 and Var[W+] = m(m+1)(2m+1)/24 - sum(t^3 - t)/48 over tie
groups of size t. The statistic is the continuity-corrected z = (W+ - E - sign/2) / sd and
the p-value two-sided normal, as scipy.stats.wilcoxon(zero_method="wilcox",
correction=True, method="asymptotic"). It tests a location shift of the differences; the
reported effect is nevertheless the mean of d with a Student t interval on n - 1 degrees of
freedom (all n pairs, zeros included), because a mean loss difference is what a model gate
reads. The t quantile inverts the incomplete beta, P(|T| > t) = I_{v/(v+t^2)}(v/2, 1/2), by
Newton's method from the normal quantile (monotone from below because the tail is convex).

`paired_bootstrap`: resample the n pairs with replacement (numpy Generator, so a seed gives
the same result), take the mean of d per resample; the interval is the percentile interval
of those means and the two-sided p-value is 2 min(share <= 0, share >= 0) clipped to
[1/(resamples + 1), 1]. It makes no normality assumption on the loss differences, which
are often skewed. `statistic` is the observed mean difference.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from driftloop.stats._types import Flags, Floats
from driftloop.stats.experiments import (
    check_confidence,
    normal_quantile,
    normal_two_sided_p,
    two_sided_z,
)

_MAX_ITERATIONS = 1_000_000
_TINY = sys.float_info.min / sys.float_info.epsilon
_PRECISION = sys.float_info.epsilon
# Bootstrap resamples are drawn in blocks of about this many indices to bound memory.
_BLOCK_INDICES = 2_000_000
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
# Coefficients of x^-1, x^-3, ... in the Stirling series of lgamma.
_STIRLING = (
    1.0 / 12.0,
    -1.0 / 360.0,
    1.0 / 1260.0,
    -1.0 / 1680.0,
    1.0 / 1188.0,
    -691.0 / 360360.0,
    1.0 / 156.0,
    -3617.0 / 122400.0,
)


@dataclass(frozen=True)
class PairedResult:
    """A paired comparison; positive `effect` and `statistic` mean model b is better."""

    n: int
    effect: float
    ci_low: float
    ci_high: float
    p_value: float
    statistic: float
    test: str


def mcnemar(a_correct: ArrayLike, b_correct: ArrayLike, confidence: float = 0.95) -> PairedResult:
    """Exact McNemar test; effect accuracy(b) - accuracy(a) with the Agresti-Min interval."""
    check_confidence(confidence)
    a = _outcomes(a_correct, "a_correct")
    b = _outcomes(b_correct, "b_correct")
    _check_pairs(a.size, b.size)
    n = a.size
    b_only = int(np.count_nonzero(b & ~a))
    a_only = int(np.count_nonzero(a & ~b))
    discordant = b_only + a_only
    if discordant == 0:
        p_value = 1.0
    else:
        p_value = min(1.0, 2.0 * binomial_half_cdf(min(b_only, a_only), discordant))
    z = two_sided_z(confidence)
    n_adjusted = n + 2.0
    p01 = (b_only + 0.5) / n_adjusted
    p10 = (a_only + 0.5) / n_adjusted
    centre = p01 - p10
    half = z * math.sqrt(max(0.0, p01 + p10 - centre * centre) / n_adjusted)
    return PairedResult(
        n=n,
        effect=(b_only - a_only) / n,
        ci_low=max(-1.0, centre - half),
        ci_high=min(1.0, centre + half),
        p_value=p_value,
        statistic=float(b_only - a_only),
        test="mcnemar-exact",
    )


def wilcoxon_signed_rank(
    loss_a: ArrayLike, loss_b: ArrayLike, confidence: float = 0.95
) -> PairedResult:
    """Wilcoxon signed-rank test on loss_a - loss_b; effect the mean difference (t interval)."""
    check_confidence(confidence)
    d = _differences(loss_a, loss_b)
    n = d.size
    if n < 2:
        raise ValueError("the Wilcoxon test needs at least two pairs")
    nonzero = d[d != 0]
    m = nonzero.size
    if m == 0:
        z = 0.0
        p_value = 1.0
    else:
        magnitudes = np.abs(nonzero)
        _, inverse, ties = np.unique(magnitudes, return_inverse=True, return_counts=True)
        ties_f = ties.astype(np.float64)
        first_rank = np.cumsum(ties_f) - ties_f
        ranks = (first_rank + (ties_f + 1.0) / 2.0)[inverse.reshape(-1)]
        w_plus = float(ranks[nonzero > 0].sum())
        mean = m * (m + 1.0) / 4.0
        variance = m * (m + 1.0) * (2.0 * m + 1.0) / 24.0 - float(np.sum(ties_f**3 - ties_f)) / 48.0
        sd = math.sqrt(variance)
        shift = w_plus - mean
        z = (shift - math.copysign(0.5, shift) if shift != 0 else 0.0) / sd
        p_value = normal_two_sided_p(z)
    effect = float(d.mean())
    half = t_quantile(0.5 + confidence / 2.0, n - 1) * float(d.std(ddof=1)) / math.sqrt(n)
    return PairedResult(
        n=n,
        effect=effect,
        ci_low=effect - half,
        ci_high=effect + half,
        p_value=p_value,
        statistic=z,
        test="wilcoxon-signed-rank",
    )


def paired_bootstrap(
    loss_a: ArrayLike,
    loss_b: ArrayLike,
    *,
    seed: int,
    resamples: int = 2000,
    confidence: float = 0.95,
) -> PairedResult:
    """Percentile bootstrap of mean(loss_a - loss_b) over resampled pairs."""
    check_confidence(confidence)
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    d = _differences(loss_a, loss_b)
    n = d.size
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    block = max(1, _BLOCK_INDICES // n)
    for start in range(0, resamples, block):
        stop = min(resamples, start + block)
        means[start:stop] = d[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    below = float(np.count_nonzero(means <= 0)) / resamples
    above = float(np.count_nonzero(means >= 0)) / resamples
    p_value = min(1.0, max(1.0 / (resamples + 1), 2.0 * min(below, above)))
    effect = float(d.mean())
    return PairedResult(
        n=n,
        effect=effect,
        ci_low=float(low),
        ci_high=float(high),
        p_value=p_value,
        statistic=effect,
        test="paired-bootstrap",
    )


def binomial_half_cdf(k: int, trials: int) -> float:
    """P(X <= k) for X ~ Binomial(trials, 1/2)."""
    if trials < 0:
        raise ValueError(f"trials must be non-negative, got {trials}")
    if k < 0:
        return 0.0
    if k >= trials:
        return 1.0
    return beta_regularized(trials - k, k + 1.0, 0.5, 0.5)


def t_quantile(p: float, dof: float) -> float:
    """The t with P(T <= t) = p for Student's T with `dof` degrees of freedom."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"a t quantile needs 0 < p < 1, got {p}")
    if not dof > 0:
        raise ValueError(f"dof must be positive, got {dof}")
    if p == 0.5:
        return 0.0
    tail = 2.0 * min(p, 1.0 - p)  # the two-sided tail P(|T| > t) to reach
    t = normal_quantile(1.0 - tail / 2.0)
    log_norm = (
        math.lgamma((dof + 1.0) / 2.0) - math.lgamma(dof / 2.0) - 0.5 * math.log(dof * math.pi)
    )
    for _ in range(200):
        gap = t_two_sided_tail(t, dof) - tail
        density = math.exp(log_norm - (dof + 1.0) / 2.0 * math.log1p(t * t / dof))
        step = gap / (2.0 * density)
        t += step
        if abs(step) <= 4.0 * _PRECISION * t:
            break
    return t if p > 0.5 else -t


def t_two_sided_tail(t: float, dof: float) -> float:
    """P(|T| > |t|) for Student's T with `dof` degrees of freedom."""
    t2 = t * t
    return beta_regularized(dof / 2.0, 0.5, dof / (dof + t2), t2 / (dof + t2))


def beta_regularized(a: float, b: float, x: float, one_minus_x: float) -> float:
    """Regularised incomplete beta I_x(a, b); pass 1 - x as well, computed without loss."""
    if a <= 0 or b <= 0:
        raise ValueError("the incomplete beta needs a > 0 and b > 0")
    if x <= 0:
        return 0.0
    if one_minus_x <= 0:
        return 1.0
    log_x = math.log1p(-one_minus_x) if x > 0.5 else math.log(x)
    log_y = math.log1p(-x) if one_minus_x > 0.5 else math.log(one_minus_x)
    front = math.exp(a * log_x + b * log_y - log_beta(a, b))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_continued_fraction(a, b, x) / a
    return 1.0 - front * _beta_continued_fraction(b, a, one_minus_x) / b


def log_beta(a: float, b: float) -> float:
    """log B(a, b) without the cancellation of three large lgamma values (R's lbeta)."""
    p, q = min(a, b), max(a, b)
    if p >= 10:
        correction = _stirling_correction(p) + _stirling_correction(q)
        correction -= _stirling_correction(p + q)
        return (
            -0.5 * math.log(q)
            + _LOG_SQRT_2PI
            + correction
            + (p - 0.5) * math.log(p / (p + q))
            + q * math.log1p(-p / (p + q))
        )
    if q >= 10:
        correction = _stirling_correction(q) - _stirling_correction(p + q)
        return (
            math.lgamma(p)
            + correction
            + p
            - p * math.log(p + q)
            + (q - 0.5) * math.log1p(-p / (p + q))
        )
    return math.lgamma(p) + math.lgamma(q) - math.lgamma(p + q)


def _stirling_correction(x: float) -> float:
    # lgamma(x) - ((x - 1/2) log x - x + log sqrt(2 pi)) for x >= 10: the Stirling series.
    inverse = 1.0 / x
    square = inverse * inverse
    total = 0.0
    for coefficient in reversed(_STIRLING):
        total = total * square + coefficient
    return total * inverse


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    # Modified Lentz on the continued fraction of the incomplete beta (Numerical Recipes).
    qab = a + b
    qap = a + 1.0
    qam = a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    if abs(d) < _TINY:
        d = _TINY
    d = 1.0 / d
    h = d
    for m in range(1, _MAX_ITERATIONS):
        m2 = 2.0 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        if abs(d) < _TINY:
            d = _TINY
        c = 1.0 + aa / c
        if abs(c) < _TINY:
            c = _TINY
        d = 1.0 / d
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        if abs(d) < _TINY:
            d = _TINY
        c = 1.0 + aa / c
        if abs(c) < _TINY:
            c = _TINY
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _PRECISION:
            return h
    raise ArithmeticError(f"incomplete beta did not converge for a={a}, b={b}, x={x}")


def _outcomes(values: ArrayLike, name: str) -> Flags:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D")
    if array.dtype != np.bool_:
        if array.size and not np.all((array == 0) | (array == 1)):
            raise ValueError(f"{name} must hold booleans (or 0/1)")
        array = array.astype(np.bool_)
    return array


def _differences(loss_a: ArrayLike, loss_b: ArrayLike) -> Floats:
    a: Floats = np.asarray(loss_a, dtype=np.float64)
    b: Floats = np.asarray(loss_b, dtype=np.float64)
    if a.ndim != 1 or b.ndim != 1:
        raise ValueError("loss_a and loss_b must be 1-D")
    _check_pairs(a.size, b.size)
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("losses contain NaN or infinite values")
    return a - b


def _check_pairs(n_a: int, n_b: int) -> None:
    if n_a != n_b:
        raise ValueError(f"the two models must be scored on the same rows: {n_a} != {n_b}")
    if n_a == 0:
        raise ValueError("no pairs to compare")
