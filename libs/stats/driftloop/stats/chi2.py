"""Chi-square goodness-of-fit of current category counts against reference shares.

The expected counts are the smoothed reference shares (see `divergence.smooth`) times the
current total, so a category absent from the reference still has a positive expectation.
The p-value is the regularised upper incomplete gamma Q(dof/2, x/2), computed as in
Numerical Recipes: the power series for P = 1 - Q when x < a + 1, Lentz's continued fraction
for Q otherwise, each to double precision.
"""

from __future__ import annotations

import math
import sys
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from driftloop.stats.divergence import EPS, smooth, to_shares

_MAX_ITERATIONS = 100_000
_TINY = sys.float_info.min / sys.float_info.epsilon
_PRECISION = sys.float_info.epsilon


class Chi2Result(NamedTuple):
    """A chi-square test: statistic, p-value and degrees of freedom (bins - 1)."""

    statistic: float
    p_value: float
    dof: int


def chi2_test(
    reference_shares: ArrayLike, current_counts: ArrayLike, eps: float = EPS
) -> Chi2Result:
    """Test whether the current counts follow the (smoothed) reference shares."""
    expected_shares = smooth(to_shares(reference_shares), eps)
    observed = np.asarray(current_counts, dtype=np.float64)
    if expected_shares.ndim != 1 or observed.shape != expected_shares.shape:
        raise ValueError("expected 1-D reference shares and current counts of the same length")
    if observed.size < 2:
        raise ValueError("a chi-square test needs at least two bins")
    if not np.all(np.isfinite(observed)) or np.any(observed < 0):
        raise ValueError("counts must be finite and non-negative")
    total = float(observed.sum())
    if total <= 0:
        raise ValueError("the current counts are all zero")
    expected = expected_shares * total
    statistic = float(np.sum((observed - expected) ** 2 / expected))
    dof = observed.size - 1
    return Chi2Result(statistic, chi2_sf(statistic, dof), dof)


def chi2_sf(x: float, dof: int) -> float:
    """P(X > x) for a chi-square variable X with `dof` degrees of freedom."""
    if dof < 1:
        raise ValueError("dof must be at least 1")
    return gamma_q(dof / 2.0, x / 2.0)


def gamma_q(a: float, x: float) -> float:
    """Regularised upper incomplete gamma Q(a, x) = Gamma(a, x) / Gamma(a)."""
    if a <= 0 or x < 0 or math.isnan(x):
        raise ValueError("gamma_q needs a > 0 and x >= 0")
    if x == 0:
        return 1.0
    if math.isinf(x):
        return 0.0
    if x < a + 1.0:
        return 1.0 - _gamma_p_series(a, x)
    return _gamma_q_continued_fraction(a, x)


def _prefactor(a: float, x: float) -> float:
    # x^a e^-x / Gamma(a), in logs so that large a and x neither overflow nor underflow early.
    return math.exp(a * math.log(x) - x - math.lgamma(a))


def _gamma_p_series(a: float, x: float) -> float:
    term = 1.0 / a
    total = term
    denominator = a
    for _ in range(_MAX_ITERATIONS):
        denominator += 1.0
        term *= x / denominator
        total += term
        if abs(term) < abs(total) * _PRECISION:
            return total * _prefactor(a, x)
    raise ArithmeticError(f"gamma series did not converge for a={a}, x={x}")


def _gamma_q_continued_fraction(a: float, x: float) -> float:
    # Modified Lentz: _TINY stands in for a zero denominator so the recurrence can continue.
    b = x + 1.0 - a
    c = 1.0 / _TINY
    d = 1.0 / b
    h = d
    for i in range(1, _MAX_ITERATIONS):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        if abs(d) < _TINY:
            d = _TINY
        c = b + an / c
        if abs(c) < _TINY:
            c = _TINY
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _PRECISION:
            return h * _prefactor(a, x)
    raise ArithmeticError(f"gamma continued fraction did not converge for a={a}, x={x}")
