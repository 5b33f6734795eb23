"""Multiple-testing correction across features: Benjamini-Hochberg false discovery rate."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from driftloop.stats._types import Flags, Floats


def benjamini_hochberg(p_values: ArrayLike, alpha: float = 0.05) -> tuple[Flags, Floats]:
    """Which hypotheses to reject at false discovery rate `alpha`, and the BH-adjusted p-values.

    The adjusted values equal scipy.stats.false_discovery_control(p, method="bh"); a
    hypothesis is rejected when its adjusted p-value is at most alpha, which is the
    step-up rule (reject the k smallest, k the largest rank with p_(k) <= k alpha / m).
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError("expected a 1-D array of p-values")
    if np.any(np.isnan(p)) or np.any(p < 0) or np.any(p > 1):
        raise ValueError("p-values must lie in [0, 1]")
    if not 0 < alpha < 1:
        raise ValueError("alpha must lie in (0, 1)")
    order = np.argsort(p)
    ranks = np.arange(1, p.size + 1)
    scaled = p[order] * (p.size / ranks)
    # Step-up: each adjusted value is the smallest scaled value at its rank or above.
    stepped = np.minimum.accumulate(scaled[::-1])[::-1]
    adjusted = np.empty_like(p)
    adjusted[order] = np.clip(stepped, 0.0, 1.0)
    return adjusted <= alpha, adjusted
