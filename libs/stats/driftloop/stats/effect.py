"""Effect sizes, and tests of whether a drift is more than negligible (minimum-effect tests).

A plain test asks "is there any difference at all?". With enough rows every difference
is significant, including the reference's own estimation error (a frozen share from a few
thousand training rows is never exactly the population's): on a million stable rows the
plain chi-squared test of category shares gives p far below 1e-10. The tests here ask
instead "is the difference larger than a negligible margin?" (H0: distance <= margin),
so their power against a negligible difference does not grow with the window.

Both rest on the triangle inequality of a norm ||.||: the observed distance is at most the
true one plus the sampling noise, ||F_hat_cur - F_hat_ref|| <= ||F_cur - F_ref|| + ||noise||.
Under H0 (true distance <= margin), observed - margin <= ||noise||, whose law is the null
law of the plain test; so that law's tail at (observed - margin) is a valid p-value for
H0. It is conservative, the price of a bound that needs no model of how the distribution
moved: with the true distance at the margin, the hardest case of H0,
tests/unit/test_stats_effect.py measures a rejection rate of about 1% (chi-squared) and
0.3% (KS) at a nominal 5%. A margin of 0 gives back the plain test exactly.

- numbers: the KS distance D = sup |F_ref - F_cur| (sup norm of the ECDF difference): the
  largest share of the population that crossed some value. For a normal feature whose
  mean moves by delta standard deviations, D = 2 Phi(delta / 2) - 1, about 0.4 delta.
- categories: the effect size is the total variation distance TVD = sum |q - p| / 2, the
  share of the population that changed category (for two categories it is the KS D).
  The test is Pearson's chi-squared, whose statistic is n w^2 with w = ||(q - p)/sqrt(p)||
  (Cohen's w, a weighted L2 norm); the minimum-effect form tests w <= 2 margin. Since
  2 TVD <= w (Cauchy-Schwarz), and 2 TVD = w for two equally common categories, the
  margin keeps the same meaning (a share of rows) as for numbers.

The noise law is asymptotic (Kolmogorov for KS, chi-squared with k - 1 degrees of freedom
under shares near the reference for Pearson), as in the plain tests.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from driftloop.stats.chi2 import Chi2Result, chi2_sf, chi2_test
from driftloop.stats.divergence import EPS, to_shares
from driftloop.stats.ks import kolmogorov_sf


def _check_margin(margin: float) -> None:
    if not 0.0 <= margin < 1.0:
        raise ValueError("the margin must lie in [0, 1)")


def normal_shift_ks(delta: float) -> float:
    """The KS distance between N(0, 1) and N(delta, 1): 2 Phi(|delta| / 2) - 1.

    Both CDFs differ most midway between the means, at delta / 2."""
    return math.erf(abs(delta) / (2.0 * math.sqrt(2.0)))


def total_variation(reference: ArrayLike, current: ArrayLike) -> float:
    """sum |q - p| / 2 of two count or share vectors over the same buckets (unsmoothed):
    the share of the population that is in another bucket, in [0, 1]."""
    p, q = to_shares(reference), to_shares(current)
    if p.ndim != 1 or p.shape != q.shape:
        raise ValueError("expected two 1-D vectors over the same buckets")
    return float(min(1.0, 0.5 * np.abs(q - p).sum()))


def ks_margin_p_value(d: float, n: int, m: int, margin: float) -> float:
    """P-value of H0: the true KS distance is at most `margin`, given D of samples of n
    and m values: kolmogorov_sf(sqrt(n m / (n + m)) * max(D - margin, 0)). With margin 0
    it is the plain asymptotic KS p-value (`ks_p_value`)."""
    if n <= 0 or m <= 0:
        raise ValueError("sample sizes must be positive")
    if not 0.0 <= d <= 1.0:
        raise ValueError("D must lie in [0, 1]")
    _check_margin(margin)
    return kolmogorov_sf(math.sqrt(n * m / (n + m)) * max(d - margin, 0.0))


def chi2_margin_test(
    reference_shares: ArrayLike, current_counts: ArrayLike, margin: float, eps: float = EPS
) -> Chi2Result:
    """Pearson's chi-squared statistic of the counts against the (smoothed) reference
    shares, with the p-value of H0: Cohen's w <= 2 `margin`, which is
    chi2_sf(n * max(w_hat - 2 margin, 0)^2, k - 1) with w_hat = sqrt(statistic / n).
    With margin 0 it is `chi2_test` exactly."""
    _check_margin(margin)
    plain = chi2_test(reference_shares, current_counts, eps)
    if margin == 0.0:
        return plain
    n = float(np.sum(np.asarray(current_counts, dtype=np.float64)))
    excess = max(math.sqrt(plain.statistic / n) - 2.0 * margin, 0.0)
    return Chi2Result(plain.statistic, chi2_sf(n * excess * excess, plain.dof), plain.dof)
