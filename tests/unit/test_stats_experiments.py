"""Unit tests of the model-comparison statistics (paired, experiments, sequential) against
scipy and hand computations, with seeded simulations of coverage and error rates."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from driftloop.stats import (
    Flags,
    Floats,
    GroupDifference,
    PairedResult,
    SequentialTest,
    beta_regularized,
    clustered_difference,
    fixed_horizon_n,
    mcnemar,
    msprt_interval,
    msprt_log_ratio,
    msprt_p_value,
    normal_quantile,
    paired_bootstrap,
    proportion_difference,
    required_sample_size,
    t_quantile,
    wilcoxon_signed_rank,
    wilson_interval,
)

TOLERANCE = 1e-9


# --- distributions --------------------------------------------------------------------------


@pytest.mark.parametrize("p", [1e-300, 1e-12, 1e-3, 0.02, 0.025, 0.3, 0.5, 0.7, 0.975, 0.999999])
def test_normal_quantile_matches_scipy(p: float) -> None:
    assert normal_quantile(p) == pytest.approx(stats.norm.ppf(p), rel=1e-14, abs=1e-15)


@pytest.mark.parametrize("dof", [1, 2, 5, 30, 1_000, 1_000_000])
@pytest.mark.parametrize("p", [1e-6, 0.025, 0.6, 0.975, 0.995])
def test_t_quantile_matches_scipy(dof: int, p: float) -> None:
    assert t_quantile(p, dof) == pytest.approx(stats.t.ppf(p, dof), rel=1e-10)


@pytest.mark.parametrize(("a", "b", "x"), [(0.5, 3.0, 0.2), (40.0, 61.0, 0.5), (500.5, 0.5, 0.99)])
def test_incomplete_beta_matches_scipy(a: float, b: float, x: float) -> None:
    value = beta_regularized(a, b, x, 1.0 - x)
    assert value == pytest.approx(stats.beta.cdf(x, a, b), rel=1e-12)


def test_quantiles_reject_out_of_range_probabilities() -> None:
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="0 < p < 1"):
            normal_quantile(bad)
        with pytest.raises(ValueError, match="0 < p < 1"):
            t_quantile(bad, 3)


# --- mcnemar --------------------------------------------------------------------------------


def correct_pairs(seed: int, n: int, acc_a: float, acc_b: float) -> tuple[Flags, Flags]:
    rng = np.random.default_rng(seed)
    shared = rng.random(n)
    # Correlated outcomes (same rows, similar models) with some discordance.
    a = (shared + 0.3 * rng.random(n)) < acc_a * 1.3
    b = (shared + 0.3 * rng.random(n)) < acc_b * 1.3
    return a, b


@pytest.mark.parametrize(
    ("seed", "n", "acc_b"), [(1, 40, 0.7), (2, 300, 0.75), (3, 2000, 0.71), (4, 5000, 0.7)]
)
def test_mcnemar_p_value_matches_exact_binomial(seed: int, n: int, acc_b: float) -> None:
    a, b = correct_pairs(seed, n, 0.7, acc_b)
    b_only = int(np.sum(b & ~a))
    a_only = int(np.sum(a & ~b))
    assert b_only + a_only > 0
    expected = stats.binomtest(b_only, b_only + a_only, 0.5).pvalue
    result = mcnemar(a, b)
    assert result.p_value == pytest.approx(expected, rel=TOLERANCE)
    assert result.effect == pytest.approx(float(b.mean() - a.mean()), abs=1e-15)
    assert result.statistic == b_only - a_only
    assert result.n == n


def test_mcnemar_small_tables_by_hand() -> None:
    # 8 rows where only b is right, 1 where only a is: p = 2 * P(X <= 1 | 9, 1/2) = 20/512.
    a = np.array([False] * 8 + [True] + [True] * 5 + [False] * 6)
    b = np.array([True] * 8 + [False] + [True] * 5 + [False] * 6)
    result = mcnemar(a, b)
    assert result.p_value == pytest.approx(20 / 512, rel=1e-12)
    assert result.effect == pytest.approx(7 / 20)
    assert result.statistic > 0
    # No discordant pair at all: p = 1 and a non-degenerate interval around 0.
    same = mcnemar(a, a)
    assert same.p_value == 1.0
    assert same.effect == 0.0
    assert same.ci_low < 0.0 < same.ci_high


def test_mcnemar_interval_is_agresti_min() -> None:
    a = np.array([True] * 50 + [False] * 30 + [True] * 5 + [False] * 15)
    b = np.array([True] * 50 + [False] * 30 + [False] * 5 + [True] * 15)
    result = mcnemar(a, b, confidence=0.9)
    n = 102.0
    p01, p10 = 15.5 / n, 5.5 / n
    centre = p01 - p10
    half = stats.norm.ppf(0.95) * math.sqrt((p01 + p10 - centre**2) / n)
    assert result.ci_low == pytest.approx(centre - half, rel=1e-12)
    assert result.ci_high == pytest.approx(centre + half, rel=1e-12)
    assert result.effect == pytest.approx(0.1)


def test_mcnemar_accepts_zero_one_and_rejects_bad_input() -> None:
    as_bool = mcnemar([True, False, True, True], [True, True, False, True])
    as_int = mcnemar([1, 0, 1, 1], [1, 1, 0, 1])
    assert as_bool == as_int
    with pytest.raises(ValueError, match="same rows"):
        mcnemar([True, False], [True])
    with pytest.raises(ValueError, match="no pairs"):
        mcnemar([], [])
    with pytest.raises(ValueError, match="booleans"):
        mcnemar([0.5, 1.0], [1, 1])
    with pytest.raises(ValueError, match="confidence"):
        mcnemar([True], [False], confidence=1.0)


# --- wilcoxon -------------------------------------------------------------------------------


def loss_pairs(seed: int, n: int, improvement: float, decimals: int = 1) -> tuple[Floats, Floats]:
    """Skewed losses rounded so that ties and zero differences occur."""
    rng = np.random.default_rng(seed)
    base = rng.exponential(1.0, n)
    loss_a = np.round(base + rng.normal(0.0, 0.3, n), decimals)
    loss_b = np.round(base + rng.normal(-improvement, 0.3, n), decimals)
    return loss_a, loss_b


@pytest.mark.parametrize(
    ("seed", "n", "improvement"), [(1, 30, 0.0), (2, 200, 0.05), (3, 1000, 0.02), (4, 60, -0.2)]
)
def test_wilcoxon_matches_scipy(seed: int, n: int, improvement: float) -> None:
    loss_a, loss_b = loss_pairs(seed, n, improvement)
    d = loss_a - loss_b
    assert np.any(d == 0)
    assert len(np.unique(np.abs(d[d != 0]))) < np.count_nonzero(d)
    expected = stats.wilcoxon(d, zero_method="wilcox", correction=True, method="asymptotic")
    result = wilcoxon_signed_rank(loss_a, loss_b)
    assert result.p_value == pytest.approx(expected.pvalue, rel=TOLERANCE, abs=1e-300)
    # scipy reports -|z| for a two-sided test; the sign here says which model is better.
    assert abs(result.statistic) == pytest.approx(abs(expected.zstatistic), rel=TOLERANCE)
    greater = stats.wilcoxon(d, zero_method="wilcox", method="asymptotic", alternative="greater")
    assert (result.statistic > 0) == (greater.pvalue < 0.5)
    t_ci = stats.ttest_1samp(d, 0.0).confidence_interval(0.95)
    assert result.effect == pytest.approx(float(d.mean()), abs=1e-15)
    assert result.ci_low == pytest.approx(t_ci.low, rel=1e-9)
    assert result.ci_high == pytest.approx(t_ci.high, rel=1e-9)
    assert result.n == n


def test_wilcoxon_sign_follows_the_convention_and_handles_all_ties() -> None:
    loss_a, loss_b = loss_pairs(5, 400, 0.1)
    better = wilcoxon_signed_rank(loss_a, loss_b)
    assert better.effect > 0 and better.statistic > 0 and better.p_value < 1e-3
    worse = wilcoxon_signed_rank(loss_b, loss_a)
    assert worse.effect < 0 and worse.statistic < 0
    assert worse.p_value == pytest.approx(better.p_value, rel=1e-12)
    equal = wilcoxon_signed_rank(loss_a, loss_a)
    assert equal.p_value == 1.0 and equal.effect == 0.0 and equal.ci_low == equal.ci_high == 0.0
    with pytest.raises(ValueError, match="at least two"):
        wilcoxon_signed_rank([1.0], [0.5])
    with pytest.raises(ValueError, match="same rows"):
        wilcoxon_signed_rank([1.0, 2.0], [0.5])
    with pytest.raises(ValueError, match="NaN"):
        wilcoxon_signed_rank([1.0, math.nan], [0.5, 0.5])


# --- bootstrap ------------------------------------------------------------------------------


def test_bootstrap_is_deterministic_for_a_seed_and_agrees_with_the_t_interval() -> None:
    loss_a, loss_b = loss_pairs(6, 800, 0.03, decimals=6)
    first = paired_bootstrap(loss_a, loss_b, seed=11)
    assert paired_bootstrap(loss_a, loss_b, seed=11) == first
    assert paired_bootstrap(loss_a, loss_b, seed=12) != first
    t_result = wilcoxon_signed_rank(loss_a, loss_b)
    assert first.effect == pytest.approx(t_result.effect, abs=1e-15)
    assert first.ci_low < first.effect < first.ci_high
    width = t_result.ci_high - t_result.ci_low
    assert first.ci_low == pytest.approx(t_result.ci_low, abs=0.1 * width)
    assert first.ci_high == pytest.approx(t_result.ci_high, abs=0.1 * width)
    assert first.test == "paired-bootstrap"


def test_bootstrap_p_value_is_clipped_and_signed() -> None:
    loss_a, loss_b = loss_pairs(7, 500, 0.3, decimals=6)
    clear = paired_bootstrap(loss_a, loss_b, seed=1, resamples=999)
    assert clear.p_value == pytest.approx(1 / 1000)
    assert clear.effect > 0 and clear.ci_low > 0
    reverse = paired_bootstrap(loss_b, loss_a, seed=1, resamples=999)
    assert reverse.effect < 0 and reverse.ci_high < 0
    null_a, null_b = loss_pairs(8, 500, 0.0, decimals=6)
    null = paired_bootstrap(null_a, null_b, seed=1)
    assert 0.05 < null.p_value <= 1.0
    with pytest.raises(ValueError, match="resamples"):
        paired_bootstrap(loss_a, loss_b, seed=1, resamples=0)
    with pytest.raises(ValueError, match="same rows"):
        paired_bootstrap(loss_a, loss_b[:-1], seed=1)


def test_all_paired_tests_share_the_sign_convention() -> None:
    loss_a, loss_b = loss_pairs(9, 600, 0.1, decimals=3)
    results: list[PairedResult] = [
        wilcoxon_signed_rank(loss_a, loss_b),
        paired_bootstrap(loss_a, loss_b, seed=3),
        mcnemar(loss_a < 1.0, loss_b < 1.0),
    ]
    for result in results:
        assert result.effect > 0, result.test
        assert result.statistic > 0, result.test


# --- proportions ----------------------------------------------------------------------------


def test_proportion_difference_by_hand() -> None:
    result = proportion_difference(120, 1000, 150, 1000)
    p_a, p_b, pooled = 0.12, 0.15, 0.135
    z = (p_b - p_a) / math.sqrt(pooled * (1 - pooled) * (2 / 1000))
    assert result.estimate == pytest.approx(0.03)
    assert result.z == pytest.approx(z, rel=1e-12)
    assert result.p_value == pytest.approx(2 * stats.norm.sf(z), rel=1e-10)
    # The 2x2 chi-square without continuity correction is z^2.
    table = np.array([[120, 880], [150, 850]])
    chi2 = stats.chi2_contingency(table, correction=False)
    assert result.z**2 == pytest.approx(chi2.statistic, rel=1e-10)
    assert result.p_value == pytest.approx(chi2.pvalue, rel=1e-9)
    low_a, high_a = result.ci_a
    low_b, high_b = result.ci_b
    wilson_a = stats.binomtest(120, 1000).proportion_ci(0.95, method="wilson")
    assert (low_a, high_a) == pytest.approx((wilson_a.low, wilson_a.high), rel=1e-12)
    expected_low = 0.03 - math.hypot(p_b - low_b, high_a - p_a)
    expected_high = 0.03 + math.hypot(high_b - p_b, p_a - low_a)
    assert result.ci_low == pytest.approx(expected_low, rel=1e-12)
    assert result.ci_high == pytest.approx(expected_high, rel=1e-12)
    assert result.ci_low < result.estimate < result.ci_high


def test_proportion_difference_edges_and_errors() -> None:
    none = proportion_difference(0, 50, 0, 80)
    assert none.z == 0.0 and none.p_value == 1.0
    assert none.ci_low < 0 < none.ci_high
    everything = proportion_difference(10, 10, 0, 10)
    assert everything.estimate == -1.0 and everything.ci_low >= -1.0
    assert wilson_interval(0, 10)[0] == 0.0
    with pytest.raises(ValueError, match="n_a must be at least 1"):
        proportion_difference(0, 0, 1, 10)
    with pytest.raises(ValueError, match="successes_b"):
        proportion_difference(1, 10, 11, 10)
    with pytest.raises(ValueError, match="integers"):
        proportion_difference(1, 10, 2.5, 10)  # type: ignore[arg-type]


# --- clustered ------------------------------------------------------------------------------


def test_clustered_with_one_row_per_cluster_is_the_two_sample_z_test() -> None:
    rng = np.random.default_rng(21)
    values_a = rng.normal(1.0, 2.0, 300)
    values_b = rng.normal(1.4, 1.0, 500)
    result = clustered_difference(values_a, np.arange(300), values_b, np.arange(500))
    se = math.sqrt(values_a.var(ddof=1) / 300 + values_b.var(ddof=1) / 500)
    estimate = values_b.mean() - values_a.mean()
    assert result.estimate == pytest.approx(estimate, rel=1e-12)
    assert result.z == pytest.approx(estimate / se, rel=1e-10)
    assert result.ci_high - result.ci_low == pytest.approx(2 * 1.959963984540054 * se, rel=1e-10)
    assert (result.units_a, result.units_b) == (300, 500)
    # On 0/1 values it agrees with the two-proportion test up to the n / (n - 1) factor.
    flags_a = (rng.random(2000) < 0.3).astype(np.float64)
    flags_b = (rng.random(2000) < 0.33).astype(np.float64)
    clustered = clustered_difference(flags_a, np.arange(2000), flags_b, np.arange(2000))
    plain = proportion_difference(int(flags_a.sum()), 2000, int(flags_b.sum()), 2000)
    assert clustered.estimate == pytest.approx(plain.estimate, rel=1e-12)
    assert clustered.z == pytest.approx(plain.z, rel=0.01)
    assert clustered.ci_low == pytest.approx(plain.ci_low, abs=0.002)


def test_clustered_accepts_string_ids_and_validates() -> None:
    values = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    ids = np.array([0, 0, 1, 2, 2, 2])
    names = np.array(["u0", "u0", "u1", "u2", "u2", "u2"])
    by_int = clustered_difference(values, ids, values[::-1], ids)
    by_name = clustered_difference(values, names, values[::-1], names)
    assert by_int == by_name
    assert by_int.units_a == 3 and by_int.n_a == 6
    # Ratio estimator: sum(y) / sum(n).
    assert by_int.mean_a == pytest.approx(21 / 6)
    with pytest.raises(ValueError, match="differ in length"):
        clustered_difference(values, ids[:-1], values, ids)
    with pytest.raises(ValueError, match="two clusters"):
        clustered_difference(values, np.zeros(6), values, ids)
    with pytest.raises(ValueError, match="NaN"):
        clustered_difference([1.0, math.nan], [1, 2], values, ids)


def clustered_sample(
    rng: np.random.Generator, clusters: int, mean: float
) -> tuple[Floats, np.ndarray[tuple[int], np.dtype[np.int64]]]:
    """Rows of `clusters` entities of varied sizes with a strong per-entity effect (ICC 0.5)."""
    sizes = 1 + rng.poisson(9.0, clusters)
    ids = np.repeat(np.arange(clusters), sizes)
    entity = rng.normal(0.0, 1.0, clusters)[ids]
    return mean + entity + rng.normal(0.0, 1.0, ids.size), ids


def test_clustered_interval_covers_where_the_naive_one_does_not() -> None:
    rng = np.random.default_rng(31)
    repetitions, truth = 300, 0.3
    clustered_hits = naive_hits = 0
    for _ in range(repetitions):
        values_a, ids_a = clustered_sample(rng, 200, 1.0)
        values_b, ids_b = clustered_sample(rng, 200, 1.0 + truth)
        result = clustered_difference(values_a, ids_a, values_b, ids_b)
        clustered_hits += result.ci_low <= truth <= result.ci_high
        naive = clustered_difference(
            values_a, np.arange(values_a.size), values_b, np.arange(values_b.size)
        )
        naive_hits += naive.ci_low <= truth <= naive.ci_high
    clustered_coverage = clustered_hits / repetitions
    naive_coverage = naive_hits / repetitions
    print(f"coverage: clustered {clustered_coverage:.3f}, naive per-row {naive_coverage:.3f}")
    assert 0.92 <= clustered_coverage <= 0.98
    assert naive_coverage < 0.8


# --- sample size ----------------------------------------------------------------------------


def test_required_sample_size_textbook_values() -> None:
    # Fleiss, Levin and Paik: 5% vs 10%, alpha 0.05 two-sided, power 0.8: n = 434.4 -> 435.
    assert required_sample_size(0.05, 0.05) == 435
    assert required_sample_size(0.10, -0.05) == 435
    assert required_sample_size(0.05, 0.05, design_effect=2.0) == 869
    z_a, z_b = stats.norm.ppf(0.995), stats.norm.ppf(0.9)
    p1, p2 = 0.3, 0.33
    p_bar = (p1 + p2) / 2
    n = (
        z_a * math.sqrt(2 * p_bar * (1 - p_bar)) + z_b * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    ) ** 2 / 0.03**2
    assert required_sample_size(0.3, 0.03, alpha=0.01, power=0.9) == math.ceil(n)
    with pytest.raises(ValueError, match="baseline_rate"):
        required_sample_size(0.0, 0.1)
    with pytest.raises(ValueError, match="min_effect"):
        required_sample_size(0.95, 0.1)
    with pytest.raises(ValueError, match="design_effect"):
        required_sample_size(0.5, 0.1, design_effect=0.5)


# --- sequential -----------------------------------------------------------------------------


def test_fixed_horizon_n_textbook_value() -> None:
    # Half a standard deviation, alpha 0.05, power 0.8: 2 * (1.96 + 0.8416)^2 / 0.25 = 62.8.
    assert fixed_horizon_n(0.5, 1.0) == 63
    assert fixed_horizon_n(-0.5, 2.0) == 252
    with pytest.raises(ValueError, match="effect"):
        fixed_horizon_n(0.0, 1.0)


def test_msprt_p_value_and_interval_by_hand() -> None:
    n, mean_a, mean_b, var, tau = 400, 1.0, 1.2, 1.5, 0.1
    v = 2 * var / n
    ratio = math.sqrt(v / (v + tau**2)) * math.exp(
        tau**2 * (mean_b - mean_a) ** 2 / (2 * v * (v + tau**2))
    )
    p = msprt_p_value(n, mean_a, var, n, mean_b, var, tau)
    assert p == pytest.approx(min(1.0, 1 / ratio), rel=1e-12)
    low, high = msprt_interval(n, mean_a, var, n, mean_b, var, tau, 0.05)
    # The interval ends are where the mixture ratio against that difference reaches 1/alpha.
    for end in (low, high):
        log_ratio = msprt_log_ratio(mean_b - mean_a - end, v, tau)
        assert log_ratio == pytest.approx(math.log(20.0), rel=1e-12)
    assert low < mean_b - mean_a < high
    assert msprt_p_value(n, 1.0, 0.0, n, 1.0, 0.0, tau) == 1.0
    with pytest.raises(ValueError, match="tau"):
        msprt_p_value(n, mean_a, var, n, mean_b, var, 0.0)


def test_sequential_test_is_idempotent_and_validates() -> None:
    test = SequentialTest(0.1)
    assert test.update(1, 1.0, 1.0, 1, 0.0, 0.0).p_value == 1.0
    rng = np.random.default_rng(41)
    a = rng.normal(0.0, 1.0, 300)
    b = rng.normal(0.5, 1.0, 300)
    totals = (300, a.sum(), (a * a).sum(), 300, b.sum(), (b * b).sum())
    state = test.update(*totals)
    assert test.update(*totals) == state
    assert test.state == state
    assert state.decision == "b_better" and state.p_value < 0.05
    assert state.ci_low > 0
    lower_is_better = SequentialTest(0.1, higher_is_better=False)
    assert lower_is_better.update(*totals).decision == "b_worse"
    with pytest.raises(ValueError, match="cumulative"):
        test.update(100, 0.0, 1.0, 300, 0.0, 1.0)
    with pytest.raises(ValueError, match="non-negative integer"):
        test.update(-1, 0.0, 1.0, 300, 0.0, 1.0)
    with pytest.raises(ValueError, match="min_effect"):
        SequentialTest(0.0)


def monitor(
    a: Floats, b: Floats, min_effect: float, every: int, truth: float
) -> tuple[Floats, Floats, Floats]:
    """Run one SequentialTest per row (a run), feeding cumulative totals every `every` values.

    Returns per run: the sample size per arm at the decision (the cap if none), +1/-1/0 for
    b_better/b_worse/continue, and whether the confidence sequence ever excluded `truth`."""
    looks = np.arange(every, a.shape[1] + 1, every)
    sums = [np.cumsum(x, axis=1)[:, looks - 1] for x in (a, a * a, b, b * b)]
    stops = np.full(a.shape[0], float(a.shape[1]))
    signs = np.zeros(a.shape[0])
    missed = np.zeros(a.shape[0])
    for run in range(a.shape[0]):
        test = SequentialTest(min_effect)
        for look, n in enumerate(looks):
            state = test.update(
                int(n),
                float(sums[0][run, look]),
                float(sums[1][run, look]),
                int(n),
                float(sums[2][run, look]),
                float(sums[3][run, look]),
            )
            if not state.ci_low <= truth <= state.ci_high:
                missed[run] = 1.0
            if state.decision != "continue":
                stops[run] = n
                signs[run] = 1.0 if state.decision == "b_better" else -1.0
                break
    return stops, signs, missed


@pytest.mark.parametrize("kind", ["normal", "bernoulli"])
def test_sequential_false_positives_stay_below_alpha_under_continuous_monitoring(
    kind: str,
) -> None:
    rng = np.random.default_rng(51 if kind == "normal" else 52)
    runs, length, alpha = 200, 2000, 0.05
    if kind == "normal":
        a = rng.normal(0.0, 1.0, (runs, length))
        b = rng.normal(0.0, 1.0, (runs, length))
        min_effect = 0.1
    else:
        a = (rng.random((runs, length)) < 0.3).astype(np.float64)
        b = (rng.random((runs, length)) < 0.3).astype(np.float64)
        min_effect = 0.03
    _, signs, missed = monitor(a, b, min_effect, 50, 0.0)
    false_positive = float(np.mean(signs != 0))
    tolerance = 2.0 * math.sqrt(alpha * (1 - alpha) / runs)
    # The same looks with a fixed-horizon z-test: the peeking problem the mSPRT solves.
    looks = np.arange(50, length + 1, 50)
    mean_a = np.cumsum(a, axis=1)[:, looks - 1] / looks
    mean_b = np.cumsum(b, axis=1)[:, looks - 1] / looks
    var_a = (np.cumsum(a * a, axis=1)[:, looks - 1] - looks * mean_a**2) / (looks - 1)
    var_b = (np.cumsum(b * b, axis=1)[:, looks - 1] - looks * mean_b**2) / (looks - 1)
    z = (mean_b - mean_a) / np.sqrt((var_a + var_b) / looks)
    naive = float(np.mean(np.any(np.abs(z) > stats.norm.ppf(1 - alpha / 2), axis=1)))
    print(f"{kind}: false positives {false_positive:.3f} over 40 looks (naive z-test {naive:.3f})")
    assert false_positive <= alpha + tolerance
    assert naive > 2 * alpha
    # While the test runs, the confidence sequence excludes 0 only when it decides.
    assert np.array_equal(missed, (signs != 0).astype(np.float64))


def test_sequential_detects_a_real_difference_sooner_than_a_fixed_design() -> None:
    rng = np.random.default_rng(61)
    runs, length, effect = 200, 2000, 0.2
    a = rng.normal(0.0, 1.0, (runs, length))
    b = rng.normal(effect, 1.0, (runs, length))
    stops, signs, missed = monitor(a, b, effect, 50, effect)
    power = float(np.mean(signs == 1))
    average_n = float(stops.mean())
    fixed_n = fixed_horizon_n(effect, 1.0, 0.05, min(power, 0.99))
    print(
        f"mSPRT: power {power:.3f}, average n per arm {average_n:.0f} "
        f"(fixed horizon for that power {fixed_n}, for power 0.8 {fixed_horizon_n(effect, 1.0)})"
    )
    assert power >= 0.9
    assert not np.any(signs == -1)
    assert average_n < fixed_n
    # The confidence sequence covers the true difference at every look in most runs.
    assert float(np.mean(missed)) <= 0.05 + 2.0 * math.sqrt(0.05 * 0.95 / runs)


def test_group_difference_is_exported() -> None:
    result = proportion_difference(1, 2, 1, 2)
    assert isinstance(result, GroupDifference)
    assert result.method.startswith("two-proportion")
