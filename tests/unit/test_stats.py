"""Unit tests of driftloop.stats against scipy and plain-Python reference computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import spatial, special, stats

from driftloop.stats import (
    EPS,
    PSI_MODERATE,
    Floats,
    Histogram,
    benjamini_hochberg,
    bin_counts,
    bin_index,
    category_counts,
    chi2_test,
    js_distance,
    js_distance_rows,
    js_divergence,
    js_divergence_rows,
    kl,
    kl_rows,
    kolmogorov_sf,
    ks_counts,
    ks_from_counts,
    ks_p_value,
    ks_statistic,
    psi,
    psi_rows,
    smooth,
)

TOLERANCE = 1e-9


def random_counts(seed: int, bins: int = 11, empty: int = 2) -> Floats:
    """Counts with a few empty bins, the case smoothing exists for."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 500, size=bins).astype(np.float64)
    counts[rng.choice(bins, size=empty, replace=False)] = 0
    return counts


def smoothed(counts: Floats) -> Floats:
    return smooth(counts / counts.sum())


# --- bins -----------------------------------------------------------------------------------


def test_bins_are_right_closed_with_open_outer_bins_and_nan_apart() -> None:
    edges = [0.0, 1.0, 2.0]
    values = [-math.inf, -5.0, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5, math.inf, math.nan]
    assert bin_index(values, edges).tolist() == [0, 0, 0, 1, 1, 2, 2, 3, 3, -1]
    assert bin_counts(values, edges).tolist() == [3, 2, 2, 2]
    histogram = Histogram.of(values, edges)
    assert histogram.nans == 1
    assert histogram.total == 9
    np.testing.assert_allclose(histogram.shares(), [3 / 9, 2 / 9, 2 / 9, 2 / 9])


@pytest.mark.parametrize("edges", [[], [1.0, 1.0], [2.0, 1.0], [0.0, math.inf], [[0.0, 1.0]]])
def test_invalid_edges_are_refused(edges: list[float]) -> None:
    with pytest.raises(ValueError, match="edges"):
        bin_counts([1.0], edges)


def test_window_histograms_merge_into_the_histogram_of_all_windows() -> None:
    rng = np.random.default_rng(1)
    edges = np.quantile(rng.normal(size=1000), np.linspace(0.1, 0.9, 9))
    windows = [rng.normal(0.2, 1.1, size=size) for size in (0, 17, 300, 1000)]
    windows[2][::7] = np.nan
    merged = Histogram.empty(edges)
    for window in windows:
        merged = merged.merge(Histogram.of(window, edges))
    assert merged == Histogram.of(np.concatenate(windows), edges)
    assert merged.nans == 43
    assert merged.total == 1317 - 43


def test_merging_histograms_over_different_edges_is_refused() -> None:
    with pytest.raises(ValueError, match="different edges"):
        Histogram.of([1.0], [0.0, 1.0]).merge(Histogram.of([1.0], [0.0, 2.0]))


def test_histograms_are_immutable_and_checked() -> None:
    counts = np.array([1, 2], dtype=np.int64)
    histogram = Histogram((0.0,), counts)
    counts[0] = 99
    assert histogram.counts.tolist() == [1, 2]
    with pytest.raises(ValueError, match="read-only"):
        histogram.counts[0] = 5
    with pytest.raises(ValueError, match="expected 2 counts"):
        Histogram((0.0,), np.array([1, 2, 3]))
    with pytest.raises(ValueError, match="empty histogram"):
        Histogram.empty([0.0]).shares()


def test_category_counts_put_unknown_values_in_the_unseen_bucket() -> None:
    values = ["a", "b", "a", "z", "c", "y", "a"]
    assert category_counts(values, ["a", "b", "c"]).tolist() == [3, 1, 1, 2]
    assert category_counts([], ["a"]).tolist() == [0, 0]
    with pytest.raises(ValueError, match="distinct"):
        category_counts(values, ["a", "a"])


# --- divergences ----------------------------------------------------------------------------


def test_smoothing_keeps_empty_bins_positive_and_the_sum_at_one() -> None:
    shares = np.array([0.0, 0.25, 0.75, 0.0])
    smoothed_shares = smooth(shares)
    assert np.all(smoothed_shares > 0)
    assert smoothed_shares.sum() == pytest.approx(1.0, abs=1e-15)
    np.testing.assert_allclose(smoothed_shares, (shares + EPS) / (1 + 4 * EPS))


@pytest.mark.parametrize("seed", range(5))
def test_psi_matches_a_plain_loop(seed: int) -> None:
    reference, current = random_counts(seed), random_counts(seed + 100)
    p, q = smoothed(reference), smoothed(current)
    expected = sum((qi - pi) * math.log(qi / pi) for pi, qi in zip(p, q, strict=True))
    assert psi(reference, current) == pytest.approx(expected, rel=TOLERANCE, abs=TOLERANCE)


@pytest.mark.parametrize("seed", range(5))
def test_kl_matches_scipy(seed: int) -> None:
    reference, current = random_counts(seed), random_counts(seed + 100)
    p, q = smoothed(reference), smoothed(current)
    assert kl(reference, current) == pytest.approx(special.rel_entr(p, q).sum(), rel=TOLERANCE)
    assert kl(reference, current) == pytest.approx(stats.entropy(p, q), rel=TOLERANCE)


@pytest.mark.parametrize("seed", range(5))
def test_jensen_shannon_matches_scipy_in_bits(seed: int) -> None:
    reference, current = random_counts(seed), random_counts(seed + 100)
    distance = spatial.distance.jensenshannon(smoothed(reference), smoothed(current), base=2)
    assert js_distance(reference, current) == pytest.approx(distance, rel=TOLERANCE)
    assert js_divergence(reference, current) == pytest.approx(distance**2, rel=TOLERANCE)
    assert 0 <= js_divergence(reference, current) <= 1


def test_row_forms_give_one_value_per_feature_equal_to_the_scalar_forms() -> None:
    reference = np.array([random_counts(seed) for seed in range(20)])
    current = np.array([random_counts(seed + 100) for seed in range(20)])
    for rows, single in [
        (psi_rows, psi),
        (kl_rows, kl),
        (js_divergence_rows, js_divergence),
        (js_distance_rows, js_distance),
    ]:
        values = rows(reference, current)
        assert values.shape == (20,)
        expected = [single(p, q) for p, q in zip(reference, current, strict=True)]
        np.testing.assert_allclose(values, expected, rtol=1e-12)


def test_counts_and_shares_give_the_same_divergences() -> None:
    reference, current = random_counts(7), random_counts(8)
    shares = reference / reference.sum(), current / current.sum()
    assert psi(reference, current) == pytest.approx(psi(*shares), rel=1e-12)
    assert js_divergence(reference, current) == pytest.approx(js_divergence(*shares), rel=1e-12)


def test_divergence_inputs_are_checked() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        psi([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="positive total"):
        psi([0, 0], [1, 2])
    with pytest.raises(ValueError, match="non-negative"):
        kl([-1, 2], [1, 2])
    with pytest.raises(ValueError, match="1-D"):
        psi([[1, 2]], [[1, 2]])


def test_identical_distributions_have_no_divergence() -> None:
    counts = random_counts(3)
    assert psi(counts, counts) == pytest.approx(0.0, abs=1e-15)
    assert kl(counts, 2 * counts) == pytest.approx(0.0, abs=1e-15)
    assert js_divergence(counts, counts) == 0.0
    assert js_distance(counts, counts) == 0.0


def test_a_half_sigma_mean_shift_is_a_psi_shift_on_decile_bins() -> None:
    rng = np.random.default_rng(11)
    edges = stats.norm.ppf(np.linspace(0.1, 0.9, 9))
    reference = bin_counts(rng.normal(size=100_000), edges)
    assert psi(reference, bin_counts(rng.normal(size=100_000), edges)) < 0.001
    assert psi(reference, bin_counts(rng.normal(0.5, 1.0, size=100_000), edges)) > PSI_MODERATE


# --- Kolmogorov-Smirnov ---------------------------------------------------------------------


def ks_samples(seed: int, decimals: int | None) -> tuple[Floats, Floats]:
    """A sorted reference and a shifted current sample; rounding creates ties within and across."""
    rng = np.random.default_rng(seed)
    reference = rng.normal(size=int(rng.integers(50, 2000)))
    current = rng.normal(0.1 * seed, 1.0 + 0.05 * seed, size=int(rng.integers(30, 1500)))
    if decimals is not None:
        reference, current = reference.round(decimals), current.round(decimals)
    return np.sort(reference), current


@pytest.mark.parametrize("decimals", [None, 1, 0])
@pytest.mark.parametrize("seed", range(4))
def test_ks_statistic_matches_scipy_with_and_without_ties(seed: int, decimals: int | None) -> None:
    reference, current = ks_samples(seed, decimals)
    expected = stats.ks_2samp(reference, current).statistic
    assert ks_statistic(reference, current) == pytest.approx(expected, abs=TOLERANCE)


@pytest.mark.parametrize("decimals", [None, 1, 0])
@pytest.mark.parametrize("seed", range(4))
def test_ks_from_counts_equals_the_direct_statistic(seed: int, decimals: int | None) -> None:
    reference, current = ks_samples(seed, decimals)
    below, at_or_below = ks_counts(reference, current)
    from_counts = ks_from_counts(reference, below, at_or_below, current.size)
    assert from_counts == pytest.approx(ks_statistic(reference, current), abs=1e-12)
    assert from_counts == pytest.approx(stats.ks_2samp(reference, current).statistic, abs=TOLERANCE)


def test_ks_from_counts_handles_samples_made_only_of_ties() -> None:
    reference = np.array([1.0, 1.0, 2.0, 2.0, 2.0, 5.0])
    for current in ([2.0, 2.0], [0.0, 9.0], [1.0, 3.0, 3.0, 5.0, 5.0], [7.0]):
        below, at_or_below = ks_counts(reference, current)
        expected = stats.ks_2samp(reference, current).statistic
        assert ks_from_counts(reference, below, at_or_below, len(current)) == pytest.approx(
            expected, abs=1e-12
        )


def test_ks_inputs_are_checked() -> None:
    with pytest.raises(ValueError, match="sorted"):
        ks_statistic([2.0, 1.0], [1.0])
    with pytest.raises(ValueError, match="NaN"):
        ks_statistic([1.0, 2.0], [math.nan])
    with pytest.raises(ValueError, match="below <= at_or_below"):
        ks_from_counts([1.0, 2.0], [1, 0], [0, 0], 3)


@pytest.mark.parametrize("x", [0.0, 0.1, 0.2, 0.3, 0.5, 0.8, 0.99, 1.0, 1.01, 1.36, 2.0, 3.0, 5.0])
def test_kolmogorov_survival_matches_scipy(x: float) -> None:
    assert kolmogorov_sf(x) == pytest.approx(stats.kstwobign.sf(x), rel=TOLERANCE, abs=1e-15)


@pytest.mark.parametrize("seed", range(4))
def test_ks_p_value_is_the_asymptotic_kolmogorov_tail(seed: int) -> None:
    reference, current = ks_samples(seed, None)
    n, m = reference.size, current.size
    d = ks_statistic(reference, current)
    expected = stats.kstwobign.sf(math.sqrt(n * m / (n + m)) * d)
    assert ks_p_value(d, n, m) == pytest.approx(expected, rel=TOLERANCE, abs=1e-15)


# --- chi-square -----------------------------------------------------------------------------


@pytest.mark.parametrize("bins", [2, 3, 6, 11, 51, 400])
@pytest.mark.parametrize("mix", [0.0, 0.03, 0.1, 0.3])
def test_chi2_matches_scipy_chisquare(bins: int, mix: float) -> None:
    rng = np.random.default_rng(bins)
    reference = rng.dirichlet(np.ones(bins))
    drawn = (1 - mix) * reference + mix * rng.dirichlet(np.ones(bins))
    current = rng.multinomial(50 * bins, drawn)
    result = chi2_test(reference, current)
    expected = stats.chisquare(current, f_exp=smooth(reference) * current.sum())
    assert result.dof == bins - 1
    assert result.statistic == pytest.approx(expected.statistic, rel=TOLERANCE)
    assert result.p_value == pytest.approx(expected.pvalue, rel=TOLERANCE, abs=1e-300)


def test_chi2_p_values_span_the_whole_range() -> None:
    reference = np.array([0.5, 0.3, 0.2])
    assert chi2_test(reference, [50, 30, 20]).p_value == pytest.approx(1.0, abs=1e-6)
    tiny = chi2_test(reference, [0, 0, 200])
    assert 0 < tiny.p_value < 1e-150
    assert tiny.p_value == pytest.approx(stats.chi2.sf(tiny.statistic, 2), rel=TOLERANCE)


# --- multiple testing -----------------------------------------------------------------------


def textbook_bh_rejections(p: Floats, alpha: float) -> set[int]:
    order = np.argsort(p)
    m = p.size
    passing = [k for k in range(1, m + 1) if p[order[k - 1]] <= k * alpha / m]
    largest = max(passing, default=0)
    return {int(i) for i in order[:largest]}


@pytest.mark.parametrize("seed", range(6))
def test_benjamini_hochberg_matches_scipy_and_the_textbook_rule(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = np.concatenate([rng.uniform(size=15), rng.uniform(0, 0.01, size=5), [0.0, 1.0, 1.0]])
    p[3] = p[4]
    rejected, adjusted = benjamini_hochberg(p, alpha=0.1)
    np.testing.assert_allclose(
        adjusted, stats.false_discovery_control(p, method="bh"), rtol=1e-15, atol=0
    )
    assert set(np.flatnonzero(rejected).tolist()) == textbook_bh_rejections(p, 0.1)


def test_benjamini_hochberg_edge_cases() -> None:
    rejected, adjusted = benjamini_hochberg([])
    assert rejected.size == 0
    assert adjusted.size == 0
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        benjamini_hochberg([0.5, 1.5])
