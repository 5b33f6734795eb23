"""Normal scores: the standardisation of online detector streams that keeps the CUSUM's
false-alarm budget on skewed and heavy-tailed features.

The CUSUM threshold comes from Siegmund's approximation for normal increments. Standardised
by mean and std, a skewed feature keeps its skew: a lognormal's long right tail pushes the
upper statistic over h far more often than a normal's would (the run length to a false
alarm falls like exp(-theta h), and theta, the root of E[exp(theta (z - k))] = 1, is well
under the normal's 2k for a right-skewed z), so the false-alarm rate was many times the
stated budget, and more so the larger h (the smaller the budget).

The transform z = Phi^-1(F(x)), with F the baseline's empirical CDF, makes a stable
stream of any continuous distribution standard normal, so the threshold holds whatever
the feature's shape. F is the mid-rank CDF of the baseline sample at each distinct value
(the share below plus half the share equal), linear in between, and flat beyond the
sample's range: z stays within about +-3.5 for a sample of 2,000 (a heavy tail cannot
throw the statistic over h in one event), and a discrete feature gets one score per
value. The scores are then centred and scaled to mean 0 and variance 1 over the sample
itself, so even a feature with ties (whose scores are not exactly normal) enters the
detector with the moments the threshold assumes. For a normal feature z is (x - mean) /
std to within the sample's error, so its detection delays are those of the plain
standardisation.

The estimate of F is from n sample values: like the estimated mean it puts a stable
stream's scores off centre by about 1/sqrt(n), which the detector's margins cover. Given
the baseline's bins (edges at the training deciles and the training share of each bin,
from every training row), F is stratified: exact at the bin edges, the sample
interpolating only within a bin. That halves the excess false alarms the estimate causes
(measured on seeded lognormal baselines of 20,000 training rows).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
Values = FloatArray | Sequence[float]


class NormalScores:
    """The normal-score transform of one stream, from its baseline sample."""

    def __init__(
        self,
        sample: Values,
        edges: Values = (),
        frequencies: Values = (),
    ) -> None:
        """`edges` and `frequencies`: the baseline's bins (len(edges) + 1 shares), used
        when every bin holding training rows holds sample values too."""
        values = np.asarray(sample, dtype=np.float64)
        values = values[np.isfinite(values)]
        distinct, counts = np.unique(values, return_counts=True)
        if distinct.size < 2:
            raise ValueError("normal scores need a sample with at least two distinct values")
        cdf, weights = _stratified(distinct, counts, edges, frequencies) or _plain(counts)
        normal = NormalDist()
        scores = np.asarray([normal.inv_cdf(p) for p in cdf.tolist()])
        mean = float(np.dot(weights, scores))
        std = float(np.sqrt(np.dot(weights, (scores - mean) ** 2)))
        self._values = distinct
        self._scores = (scores - mean) / std
        self._lookup = InterpLookup(distinct, self._scores)

    @property
    def bounds(self) -> tuple[float, float]:
        """The lowest and highest score (those of values beyond the sample's range)."""
        return float(self._scores[0]), float(self._scores[-1])

    def __call__(self, values: FloatArray) -> FloatArray:
        """The scores of `values` (NaN stays NaN: a missing value): np.interp over the
        sample's distinct values, by a lookup that gives the same numbers (InterpLookup)."""
        return self._lookup(values)


class InterpLookup:
    """np.interp(x, xp, fp) for a fixed, finite, strictly increasing xp and finite fp,
    bit for bit, without a binary search per value.

    np.interp (numpy's arr_interp) finds for each x the last j with xp[j] <= x by a
    binary search (about 11 steps among 2,000 points, a cache miss each: about 65 ns a
    value, 40% of online detection's CPU), then gives NaN for a NaN x, fp[0] below xp[0],
    fp[j] when x == xp[j] or j is the last point (above the last point too), and
    otherwise slope[j] * (x - xp[j]) + fp[j] with slope[j] = (fp[j+1] - fp[j]) /
    (xp[j+1] - xp[j]); its fallback for a NaN result cannot arise here (finite fp and
    distinct finite xp give a finite or infinite slope, and x - xp[j] > 0).

    Here j comes from a table instead: the range of xp cut into CELLS_PER_POINT cells per
    point, and for each cell the last point at or below the start of the cell before it,
    a start never past the true j (a cell's width is far above the rounding of computing
    x's cell). From there j steps up while the next point is at or below x, only for the
    values that still need a step (a cell holds a point or two on most features). The
    value is then the same expression on the same doubles, so the same result
    (tests/unit/test_scores.py checks equality with np.interp on several shapes, ties to
    the points, infinities and NaN). When the points are so uneven that a cell holds more
    than MAX_PER_CELL of them (a long tail stretching the range), np.interp is used as it
    is: stepping would cost more than the search."""

    CELLS_PER_POINT = 4
    MAX_PER_CELL = 8

    def __init__(self, xp: FloatArray, fp: FloatArray) -> None:
        self._xp = np.asarray(xp, dtype=np.float64)
        self._fp = np.asarray(fp, dtype=np.float64)
        n = self._xp.size
        self._last = n - 1
        self._low = float(self._xp[0])
        self._cells = self.CELLS_PER_POINT * n
        span = float(self._xp[-1]) - self._low
        scale = self._cells / span if span > 0.0 else math.inf
        # A range too wide or too narrow for a float scale: np.interp as it is.
        self._scale = scale if math.isfinite(scale) and scale > 0.0 else 0.0
        starts = np.arange(-1, self._cells + 1) / (self._scale or 1.0) + self._low
        first = np.maximum(np.searchsorted(self._xp, starts, side="right") - 1, 0)
        self._even = self._scale > 0.0 and int(np.diff(first).max()) <= self.MAX_PER_CELL
        # int32: four cells a point stay small (2,000 points: 32 KB a stream).
        self._first = first.astype(np.int32)
        self._next = np.append(self._xp[1:], np.nan)  # NaN: no step past the last point
        self._slopes = np.append(np.diff(self._fp) / np.diff(self._xp), 0.0)

    def __call__(self, x: FloatArray) -> FloatArray:
        x = np.asarray(x, dtype=np.float64)
        if not self._even:
            return np.interp(x, self._xp, self._fp)
        # Far or infinite values overflow here, silently as in np.interp: their cell is
        # clipped, their result replaced below.
        with np.errstate(over="ignore", invalid="ignore"):
            cell = x - self._low
            cell *= self._scale
            # fmax and fmin take the number over NaN: a NaN's cell is 0 (its result is NaN).
            np.fmax(cell, 0.0, out=cell)
            np.fmin(cell, float(self._cells), out=cell)
            j = self._first[cell.astype(np.intp)].astype(np.intp)
            stepping = np.flatnonzero(self._next[j] <= x)
            while stepping.size:
                j[stepping] += 1
                stepping = stepping[self._next[j[stepping]] <= x[stepping]]
            at = self._xp[j]
            scores = self._fp[j]
            result = x - at
            result *= self._slopes[j]
            result += scores
        np.copyto(result, scores, where=(x <= at) | (j == self._last))
        return result


def normal_scores(
    sample: Values,
    edges: Values = (),
    frequencies: Values = (),
) -> NormalScores | None:
    """The transform, or None for a sample it cannot be built from (fewer than two
    distinct finite values)."""
    finite = np.asarray(sample, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if np.unique(finite).size < 2:
        return None
    return NormalScores(finite, edges, frequencies)


def _plain(counts: npt.NDArray[np.int64]) -> tuple[FloatArray, FloatArray]:
    """Mid-rank CDF of the sample at its distinct values, and their weights."""
    n = float(counts.sum())
    below = np.cumsum(counts) - counts
    return (below + counts / 2.0) / n, counts / n


def _stratified(
    distinct: FloatArray,
    counts: npt.NDArray[np.int64],
    edges: Values,
    frequencies: Values,
) -> tuple[FloatArray, FloatArray] | None:
    """Mid-rank CDF within the bins, anchored at the training shares below each bin; None
    without bins, or when a bin with training rows has no sample value."""
    cuts = np.asarray(edges, dtype=np.float64)
    shares = np.asarray(frequencies, dtype=np.float64)
    if shares.size == 0 or shares.size != cuts.size + 1:
        return None
    # The bins of driftloop.models.baseline: (-inf, e0], (e0, e1], ..., (e_last, inf).
    bins = np.searchsorted(cuts, distinct, side="left")
    in_bin = np.bincount(bins, weights=counts, minlength=shares.size)
    if np.any((shares > 0) & (in_bin == 0)):
        return None
    before_bin = np.concatenate([[0.0], np.cumsum(in_bin)])[bins]
    below = np.cumsum(counts) - counts - before_bin
    share = shares[bins] / in_bin[bins]
    floor = np.concatenate([[0.0], np.cumsum(shares)])[bins]
    weights = counts * share
    return floor + (below + counts / 2.0) * share, weights / weights.sum()
