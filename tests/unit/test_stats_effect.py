"""Effect sizes and minimum-effect tests (driftloop.stats.effect), against scipy and by
simulation of their size at the margin."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from driftloop.stats import (
    chi2_margin_test,
    chi2_test,
    ks_margin_p_value,
    ks_p_value,
    ks_statistic,
    normal_shift_ks,
    total_variation,
)


@pytest.mark.parametrize("delta", [0.0, 0.1, 0.25, 0.5, -1.0])
def test_the_ks_distance_of_a_normal_mean_shift_is_the_cdf_gap_midway(delta: float) -> None:
    expected = stats.norm.cdf(abs(delta) / 2) - stats.norm.cdf(-abs(delta) / 2)
    assert normal_shift_ks(delta) == pytest.approx(expected, abs=1e-15)
    grid = np.linspace(-8, 8, 100_001)
    assert normal_shift_ks(delta) == pytest.approx(
        np.max(np.abs(stats.norm.cdf(grid) - stats.norm.cdf(grid - delta))), abs=1e-9
    )


def test_total_variation_is_half_the_l1_distance_of_the_shares() -> None:
    rng = np.random.default_rng(3)
    reference, current = rng.random(6), rng.integers(0, 100, 6)
    p, q = reference / reference.sum(), current / current.sum()
    assert total_variation(reference, current) == pytest.approx(0.5 * sum(abs(q - p)))
    # For two categories it is the KS distance of the 0/1 variable.
    assert total_variation([0.7, 0.3], [55, 45]) == pytest.approx(0.15)
    assert total_variation([1, 0], [0, 1]) == 1.0
    with pytest.raises(ValueError):
        total_variation([0.5, 0.5], [1, 2, 3])


@pytest.mark.parametrize("seed", range(3))
def test_a_zero_margin_gives_the_plain_tests_back(seed: int) -> None:
    rng = np.random.default_rng(seed)
    reference = np.sort(rng.normal(size=500))
    current = rng.normal(0.2, size=800)
    d = ks_statistic(reference, current)
    assert ks_margin_p_value(d, 800, 500, 0.0) == ks_p_value(d, 800, 500)
    shares, counts = rng.dirichlet(np.ones(5)), rng.integers(1, 200, 5)
    assert chi2_margin_test(shares, counts, 0.0) == chi2_test(shares, counts)
    expected = stats.chisquare(counts, counts.sum() * (shares + 1e-4) / (1 + 5e-4))
    assert chi2_margin_test(shares, counts, 0.0).p_value == pytest.approx(expected.pvalue)


def test_the_margin_test_is_the_plain_tail_at_the_excess_over_the_margin() -> None:
    d, n, m = 0.07, 100_000, 2000
    excess = math.sqrt(n * m / (n + m)) * (d - 0.02)
    assert ks_margin_p_value(d, n, m, 0.02) == pytest.approx(stats.kstwobign.sf(excess))
    assert ks_margin_p_value(0.015, n, m, 0.02) == 1.0
    shares, counts = [0.5, 0.5], [56_000, 44_000]
    plain = chi2_test(shares, counts)
    w = math.sqrt(plain.statistic / 100_000)
    result = chi2_margin_test(shares, counts, 0.02)
    assert result.statistic == plain.statistic and result.dof == 1
    assert result.p_value == pytest.approx(stats.chi2.sf(100_000 * (w - 0.04) ** 2, 1))
    with pytest.raises(ValueError):
        ks_margin_p_value(0.1, n, m, -0.1)


def test_a_million_stable_rows_are_not_significant_against_shares_frozen_off_by_a_point() -> None:
    # The case: frozen shares are an estimate (from 5,000 rows each is typically
    # off by about a point); the plain test on a huge window finds that error, the margin
    # test does not. A real move of 5% of the rows stays significant.
    rng = np.random.default_rng(4)
    truth = np.asarray([0.4, 0.3, 0.2, 0.1])
    frozen = truth + np.asarray([0.01, -0.005, -0.003, -0.002])
    window = rng.multinomial(1_000_000, truth)
    reference, counts = [*frozen, 0.0], [*window, 0]
    assert chi2_test(reference, counts).p_value < 1e-10
    assert chi2_margin_test(reference, counts, 0.02).p_value == 1.0
    moved = rng.multinomial(1_000_000, truth + np.asarray([-0.05, 0.0, 0.0, 0.05]))
    assert chi2_margin_test(reference, [*moved, 0], 0.02).p_value < 1e-10


def test_the_categorical_margin_test_keeps_its_level_at_the_margin() -> None:
    # Shares whose Cohen's w is exactly twice the margin: H0 holds with equality, the
    # hardest case, so the rejection rate at 5% must be at most about 5%.
    rng = np.random.default_rng(5)
    reference = np.asarray([0.5, 0.3, 0.2])
    direction = np.asarray([1.0, -1.0, 0.0])
    w_unit = math.sqrt(np.sum(direction**2 / reference))
    truth = reference + direction * (0.04 / w_unit)
    p_values = [
        chi2_margin_test(reference, rng.multinomial(20_000, truth), 0.02, eps=0.0).p_value
        for _ in range(2000)
    ]
    assert np.mean(np.asarray(p_values) < 0.05) < 0.065


def test_the_ks_margin_test_keeps_its_level_at_the_margin() -> None:
    # A shift whose KS distance is the margin exactly (0.05 of a normal: delta such that
    # normal_shift_ks(delta) = 0.05); both samples drawn afresh each time.
    rng = np.random.default_rng(6)
    delta = 2 * float(stats.norm.ppf(0.525))
    assert normal_shift_ks(delta) == pytest.approx(0.05)
    p_values = []
    for _ in range(400):
        reference = np.sort(rng.normal(size=1000))
        current = rng.normal(delta, size=4000)
        d = ks_statistic(reference, current)
        p_values.append(ks_margin_p_value(d, 4000, 1000, 0.05))
    assert np.mean(np.asarray(p_values) < 0.05) < 0.065
