"""The normal scores' lookup (driftloop.stats.scores.InterpLookup) gives np.interp's
numbers bit for bit: on the shapes of feature samples, on the points themselves, between
and beyond them, on infinities and NaN."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from driftloop.stats.scores import InterpLookup, NormalScores

RNG = np.random.default_rng(7)
SHAPES: dict[str, Callable[[int], np.ndarray]] = {
    "normal": lambda n: RNG.normal(size=n),
    "lognormal": lambda n: RNG.lognormal(size=n),
    "half normal gaps": lambda n: np.abs(RNG.normal(size=n) - RNG.normal(size=n)),
    "integers": lambda n: RNG.integers(0, 40, size=n).astype(np.float64),
    "uniform": lambda n: RNG.uniform(-3.0, 3.0, size=n),
    "pareto": lambda n: RNG.pareto(1.0, size=n),
    "two points": lambda n: np.array([0.0, 1.0]),
    "tiny range": lambda n: 1.0 + RNG.uniform(size=n) * 1e-12,
    "huge range": lambda n: RNG.normal(size=n) * 1e300,
}


def probes(xp: np.ndarray, n: int) -> np.ndarray:
    """Values among and around the points: the points, their neighbours a float apart,
    midpoints, far outside, infinities and NaN, shuffled."""
    inner = RNG.uniform(xp[0], xp[-1], size=n)
    ends = [xp[0] - 1.0, xp[-1] + 1.0, -np.inf, np.inf, np.nan, -1e308, 1e308]
    values = np.concatenate(
        [
            inner,
            xp,
            np.nextafter(xp, np.inf),
            np.nextafter(xp, -np.inf),
            (xp[1:] + xp[:-1]) / 2.0,
            ends,
            np.full(20, np.nan),
        ]
    )
    return RNG.permutation(values)


@pytest.mark.parametrize("shape", SHAPES)
def test_lookup_equals_interp(shape: str) -> None:
    xp = np.unique(SHAPES[shape](2_000))
    fp = np.sort(RNG.normal(size=xp.size)) * 3.0
    lookup = InterpLookup(xp, fp)
    x = probes(xp, 20_000)
    expected = np.interp(x, xp, fp)
    assert np.array_equal(lookup(x), expected, equal_nan=True)
    # A batch of one value and an empty batch too.
    assert np.array_equal(lookup(x[:1]), expected[:1], equal_nan=True)
    assert lookup(x[:0]).size == 0


def test_even_points_use_the_table_and_a_long_tail_falls_back() -> None:
    normal = np.unique(RNG.normal(size=2_000))
    assert InterpLookup(normal, np.arange(normal.size, dtype=np.float64))._even
    tail = np.unique(RNG.pareto(0.5, size=2_000))
    assert not InterpLookup(tail, np.arange(tail.size, dtype=np.float64))._even


def test_normal_scores_are_interp_over_the_sample() -> None:
    sample = RNG.lognormal(size=2_000)
    scores = NormalScores(sample)
    x = probes(np.unique(sample), 5_000)
    assert np.array_equal(scores(x), np.interp(x, scores._values, scores._scores), equal_nan=True)
