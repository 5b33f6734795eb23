"""Unit tests of the shadow service's statistics: shadow-versus-live comparison on paired
requests, and A/B reports with sticky units, on seeded simulations with known answers."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from driftloop.shadow.columns import TextArray
from driftloop.shadow.comparison import Comparison, PairedColumns, compare
from driftloop.shadow.experiments import ABReport, VariantColumns, ab_report
from driftloop.stats import SequentialTest, proportion_difference, required_sample_size
from driftloop.stats.sequential import fixed_horizon_n

CLASSES = np.array(["cat", "dog", "fox"], dtype=object)


def texts(values: object) -> TextArray:
    return np.asarray(values, dtype=object)


def exact_outcomes(rng: np.random.Generator, n: int, accuracy: float) -> np.ndarray:
    """Exactly round(accuracy * n) True values in random positions."""
    return rng.permutation(n) < round(accuracy * n)


def classifier_pairs(
    seed: int,
    n: int,
    live_accuracy: float,
    shadow_accuracy: float | None,
    *,
    labelled: bool = True,
) -> PairedColumns:
    """A multiclass stream; shadow_accuracy None means the shadow answers exactly as live."""
    rng = np.random.default_rng(seed)
    truth = CLASSES[rng.integers(0, 3, n)]
    # A wrong answer is the next class over.
    wrong = CLASSES[(np.searchsorted(CLASSES, truth) + 1) % 3]
    live = np.where(exact_outcomes(rng, n, live_accuracy), truth, wrong)
    if shadow_accuracy is None:
        shadow = live.copy()
    else:
        shadow = np.where(exact_outcomes(rng, n, shadow_accuracy), truth, wrong)
    live_value = rng.random(n)
    latency = rng.gamma(4.0, 5.0, n)
    return PairedColumns(
        kind="multiclass",
        live_value=live_value,
        shadow_value=live_value.copy() if shadow_accuracy is None else rng.random(n),
        live_label=texts(live),
        shadow_label=texts(shadow),
        live_latency_ms=latency,
        shadow_latency_ms=latency.copy(),
        live_error=np.zeros(n, dtype=bool),
        shadow_error=np.zeros(n, dtype=bool),
        truth_label=texts(truth if labelled else np.full(n, "")),
        truth_value=np.full(n, math.nan),
        labelled=np.full(n, labelled),
    )


def regression_pairs(seed: int, n: int, live_noise: float, shadow_noise: float) -> PairedColumns:
    rng = np.random.default_rng(seed)
    truth = rng.normal(50.0, 10.0, n)
    return PairedColumns(
        kind="regression",
        live_value=truth + rng.normal(0.0, live_noise, n),
        shadow_value=truth + rng.normal(0.0, shadow_noise, n),
        live_label=texts(np.full(n, "")),
        shadow_label=texts(np.full(n, "")),
        live_latency_ms=np.full(n, 5.0),
        shadow_latency_ms=np.full(n, 6.0),
        live_error=np.zeros(n, dtype=bool),
        shadow_error=np.zeros(n, dtype=bool),
        truth_label=texts(np.full(n, "")),
        truth_value=truth,
        labelled=np.ones(n, dtype=bool),
    )


# --- compare --------------------------------------------------------------------------------


def test_identical_shadow_agrees_fully() -> None:
    result = compare(classifier_pairs(1, 1500, 0.7, None), {})
    assert result.compared == 1500
    assert result.agreement == 1.0
    assert result.agreement_ci[0] > 0.99
    assert result.agreement_ci[1] == 1.0
    assert result.diff_mean == result.diff_p05 == result.diff_p95 == result.diff_mean_abs == 0.0
    assert result.p99_delta_ms == 0.0
    assert result.labelled == 1500
    assert result.live_quality == result.shadow_quality == pytest.approx(0.7)
    assert result.test == "mcnemar-exact"
    assert result.effect == 0.0
    assert result.p_value == 1.0
    assert result.verdict == "no significant difference"
    unlabelled = compare(classifier_pairs(1, 1500, 0.7, None, labelled=False), {})
    assert unlabelled.agreement == 1.0
    assert unlabelled.labelled == 0
    assert math.isnan(unlabelled.live_quality) and math.isnan(unlabelled.effect)
    assert unlabelled.test == ""
    assert unlabelled.verdict == "insufficient"


def test_shadow_better_by_a_known_margin() -> None:
    result = compare(classifier_pairs(2, 2000, 0.70, 0.80), {})
    assert result.live_quality == pytest.approx(0.70)
    assert result.shadow_quality == pytest.approx(0.80)
    assert result.metric == "accuracy"
    assert result.effect == pytest.approx(0.10)
    assert result.effect_ci[0] <= 0.10 <= result.effect_ci[1]
    assert result.effect_ci[0] > 0.0
    assert result.p_value < 1e-6
    assert result.verdict == "shadow better"
    assert 0.0 < result.agreement < 1.0


def test_shadow_worse_by_a_known_margin() -> None:
    result = compare(classifier_pairs(3, 2000, 0.80, 0.70), {})
    assert result.effect == pytest.approx(-0.10)
    assert result.effect_ci[0] <= -0.10 <= result.effect_ci[1] < 0.0
    assert result.verdict == "shadow worse"


def test_a_small_difference_on_few_rows_is_not_significant() -> None:
    result = compare(classifier_pairs(4, 100, 0.70, 0.72), {})
    assert result.verdict == "no significant difference"
    assert result.p_value > 0.05
    few = compare(classifier_pairs(4, 20, 0.70, 0.90), {})
    assert few.labelled == 20
    assert few.verdict == "insufficient"
    assert few.shadow_quality == pytest.approx(0.9)


@pytest.mark.parametrize(
    ("live_noise", "shadow_noise", "verdict"),
    [(2.0, 1.5, "shadow better"), (1.5, 2.0, "shadow worse")],
)
def test_regression_quality_by_wilcoxon(
    live_noise: float, shadow_noise: float, verdict: str
) -> None:
    pairs = regression_pairs(5, 2000, live_noise, shadow_noise)
    result = compare(pairs, {})
    live_mae = float(np.abs(pairs.live_value - pairs.truth_value).mean())
    shadow_mae = float(np.abs(pairs.shadow_value - pairs.truth_value).mean())
    assert result.metric == "mae"
    assert result.test == "wilcoxon-signed-rank"
    assert result.live_quality == pytest.approx(live_mae)
    assert result.shadow_quality == pytest.approx(shadow_mae)
    assert result.effect == pytest.approx(live_mae - shadow_mae)
    true_effect = (live_noise - shadow_noise) * math.sqrt(2.0 / math.pi)
    assert result.effect_ci[0] <= true_effect <= result.effect_ci[1]
    assert result.verdict == verdict
    assert result.p99_delta_ms == pytest.approx(1.0)


def test_regression_agreement_tolerance() -> None:
    base = regression_pairs(6, 500, 1.0, 1.0)
    live = base.live_value.copy()
    live[:5] = 0.0  # near zero: judged against 1% of the median |live|, about 0.5
    close = live * 1.005
    close[:5] = 0.3
    result = compare(replace(base, live_value=live, shadow_value=close), {})
    assert result.agreement == 1.0
    assert result.agreement_rule.startswith("|shadow - live| <= 0.01")
    far = compare(replace(base, live_value=live, shadow_value=live * 1.02 + 1.0), {})
    assert far.agreement == 0.0
    assert far.diff_mean > 0
    loose = compare(
        replace(base, live_value=live, shadow_value=live * 1.02 + 0.01),
        {},
        regression_tolerance=0.05,
    )
    assert loose.agreement == 1.0


def test_error_and_latency_deltas() -> None:
    n = 2000
    pairs = classifier_pairs(7, n, 0.75, 0.75)
    rng = np.random.default_rng(7)
    live_error = rng.permutation(n) < 40
    shadow_error = rng.permutation(n) < 120
    shadow_value = pairs.live_value + 0.05
    shadow_latency = pairs.live_latency_ms + 10.0
    pairs = replace(
        pairs,
        live_error=live_error,
        shadow_error=shadow_error,
        shadow_value=shadow_value,
        shadow_latency_ms=shadow_latency,
    )
    result = compare(pairs, {})
    answered = ~live_error & ~shadow_error
    assert result.rows == n
    assert result.compared == int(answered.sum())
    assert result.live_error_rate == pytest.approx(0.02)
    assert result.shadow_error_rate == pytest.approx(0.06)
    assert result.error_rate_delta == pytest.approx(0.04)
    assert result.error_delta_ci[0] <= 0.04 <= result.error_delta_ci[1]
    assert result.error_delta_ci[0] > 0.0
    assert result.error_delta_p_value < 1e-6
    live_p50, live_p99 = np.quantile(pairs.live_latency_ms[answered], (0.5, 0.99))
    assert result.live_p50_ms == pytest.approx(live_p50)
    assert result.live_p99_ms == pytest.approx(live_p99)
    assert result.shadow_p50_ms == pytest.approx(live_p50 + 10.0)
    assert result.p99_delta_ms == pytest.approx(10.0)
    assert result.diff_mean == pytest.approx(0.05)
    assert result.diff_p05 == pytest.approx(0.05)
    assert result.diff_p95 == pytest.approx(0.05)
    assert result.diff_mean_abs == pytest.approx(0.05)
    # Failed rows are left out of quality: the labelled count is the compared count.
    assert result.labelled == result.compared


def test_segment_disagreement_finds_the_segment_where_the_shadow_differs() -> None:
    n = 4000
    pairs = classifier_pairs(8, n, 0.8, None)
    rng = np.random.default_rng(8)
    country = texts(rng.choice(["de", "fr", "us", "it"], n))
    country[:10] = "lu"  # tiny: every answer differs, but below min_segment_rows
    plan = texts(np.char.add("plan", rng.integers(0, 40, n).astype(str)))
    flips = ((country == "fr") & (rng.random(n) < 0.5)) | (rng.random(n) < 0.02)
    flips[:10] = True
    labels = pairs.live_label.copy()
    labels[flips] = CLASSES[(np.searchsorted(CLASSES, labels[flips]) + 1) % 3]
    result = compare(
        replace(pairs, shadow_label=labels), {"country": country, "plan": plan}, min_segment_rows=30
    )
    top = result.segments[0]
    fr = country == "fr"
    assert (top.feature, top.value) == ("country", "fr")
    assert top.compared == int(fr.sum())
    assert top.disagreement == pytest.approx(float(flips[fr].mean()))
    assert top.ci_low <= top.disagreement <= top.ci_high
    assert len(result.segments) == 20
    rates = [segment.disagreement for segment in result.segments]
    assert rates == sorted(rates, reverse=True)
    assert all(segment.compared >= 30 for segment in result.segments)
    assert ("country", "lu") not in {(s.feature, s.value) for s in result.segments}
    assert result.agreement == pytest.approx(1.0 - float(flips.mean()))


def test_empty_input_is_insufficient_without_exceptions() -> None:
    for kind in ("binary", "multiclass", "regression"):
        result = compare(PairedColumns.empty(kind), {"country": texts([])})
        assert isinstance(result, Comparison)
        assert result.rows == result.compared == result.labelled == 0
        assert result.verdict == "insufficient"
        assert result.segments == ()
        for value in (
            result.agreement,
            result.diff_mean,
            result.live_p99_ms,
            result.p99_delta_ms,
            result.live_error_rate,
            result.error_rate_delta,
            result.error_delta_p_value,
            result.effect,
            result.p_value,
            *result.agreement_ci,
        ):
            assert math.isnan(value)


def test_every_call_failing_is_insufficient() -> None:
    pairs = classifier_pairs(9, 200, 0.7, 0.8)
    failed = replace(pairs, shadow_error=np.ones(200, dtype=bool))
    result = compare(failed, {"country": texts(np.full(200, "de"))})
    assert result.compared == 0
    assert result.shadow_error_rate == 1.0
    assert result.error_rate_delta == 1.0
    assert math.isnan(result.agreement) and math.isnan(result.shadow_p50_ms)
    assert result.segments == ()
    assert result.verdict == "insufficient"


def test_numeric_truth_names_the_class_and_bad_input_is_rejected() -> None:
    pairs = classifier_pairs(10, 100, 0.6, None)
    numeric = replace(
        pairs,
        kind="binary",
        live_label=texts(np.full(100, "1")),
        shadow_label=texts(np.where(np.arange(100) < 40, "1", "0")),
        truth_label=texts(np.full(100, "")),
        truth_value=np.ones(100),
    )
    result = compare(numeric, {})
    assert result.labelled == 100
    assert result.live_quality == 1.0
    assert result.shadow_quality == pytest.approx(0.4)
    assert result.verdict == "shadow worse"
    with pytest.raises(ValueError, match="differ in length"):
        replace(pairs, live_value=pairs.live_value[:-1])
    with pytest.raises(ValueError, match="kind"):
        replace(pairs, kind="ranking")
    with pytest.raises(ValueError, match="categorical feature"):
        compare(pairs, {"country": texts(["de"])})


# --- A/B reports ----------------------------------------------------------------------------

ICC = 0.1


def sticky_stream(
    seed: int,
    accuracy_a: float,
    accuracy_b: float,
    *,
    units: int = 400,
    mean_rows: int = 15,
    icc: float = ICC,
    keyed: bool = True,
) -> VariantColumns:
    """Each unit (a user) is assigned one variant at random and sends 1 + Poisson(mean_rows
    - 1) requests, interleaved in time; its own accuracy is Beta-distributed around its
    variant's, with intraclass correlation `icc` (Beta(m t, (1 - m) t), t = 1/icc - 1)."""
    rng = np.random.default_rng(seed)
    in_b = rng.random(units) < 0.5
    sizes = 1 + rng.poisson(mean_rows - 1, units)
    spread = 1.0 / icc - 1.0
    mean = np.where(in_b, accuracy_b, accuracy_a)
    own_accuracy = rng.beta(mean * spread, (1.0 - mean) * spread)
    unit = rng.permutation(np.repeat(np.arange(units), sizes))
    n = unit.size
    correct = rng.random(n) < own_accuracy[unit]
    keys = np.char.add("user", unit.astype(str)) if keyed else np.full(n, "")
    return VariantColumns(
        kind="binary",
        variant=texts(np.where(in_b[unit], "b", "a")),
        entity_key=texts(keys),
        request_id=texts(np.char.add("req", np.arange(n).astype(str))),
        error=rng.random(n) < 0.01,
        latency_ms=rng.gamma(4.0, 5.0, n) + np.where(in_b[unit], 3.0, 0.0),
        output_value=rng.random(n),
        output_label=texts(np.where(correct, "1", "0")),
        labelled=rng.random(n) < 0.9,
        correct=correct,
        abs_error=np.full(n, math.nan),
    )


def naive_interval(rows: VariantColumns) -> tuple[float, float]:
    rated = rows.labelled & ~rows.error
    a = rated & (rows.variant == "a")
    b = rated & (rows.variant == "b")
    naive = proportion_difference(
        int(rows.correct[a].sum()), int(a.sum()), int(rows.correct[b].sum()), int(b.sum())
    )
    return naive.ci_low, naive.ci_high


def test_ab_report_on_one_sticky_stream() -> None:
    rows = sticky_stream(11, 0.70, 0.75)
    report = ab_report(rows, min_effect=0.05)
    assert isinstance(report, ABReport)
    assert report.control == "a"
    assert report.metric == "accuracy"
    assert [v.variant for v in report.variants] == ["a", "b"]
    control, variant = report.variants
    assert control.requests + variant.requests == rows.rows
    assert control.units + variant.units == 400
    assert report.units_in_several_variants == 0
    assert control.output_distance == 0.0 and control.label_distance == 0.0
    assert 0.0 < variant.output_distance < 0.2
    assert variant.latency_p50_ms > control.latency_p50_ms
    for summary in report.variants:
        mine = rows.variant == summary.variant
        rated = mine & rows.labelled & ~rows.error
        assert summary.error_rate == pytest.approx(float(rows.error[mine].mean()))
        assert summary.labelled == int(rated.sum())
        assert summary.quality == pytest.approx(float(rows.correct[rated].mean()))
        assert summary.quality_ci[0] < summary.quality < summary.quality_ci[1]
    (comparison,) = report.comparisons
    assert (comparison.variant, comparison.control) == ("b", "a")
    assert comparison.difference == pytest.approx(variant.quality - control.quality)
    assert comparison.ci[0] <= 0.05 <= comparison.ci[1]
    # Clustering widens the interval: the naive one is narrower by about sqrt(deff).
    naive_width = comparison.naive_ci[1] - comparison.naive_ci[0]
    width = comparison.ci[1] - comparison.ci[0]
    assert comparison.naive_ci == pytest.approx(naive_interval(rows))
    assert width / naive_width == pytest.approx(math.sqrt(comparison.design_effect), rel=0.05)
    assert 1.5 < comparison.design_effect < 5.0
    assert comparison.implied_icc == pytest.approx(
        (comparison.design_effect - 1.0) / (comparison.mean_unit_rows - 1.0)
    )
    assert comparison.sequential_looks > 10
    assert comparison.sequential_ci[0] <= comparison.sequential_difference
    assert comparison.sequential_difference <= comparison.sequential_ci[1]
    assert comparison.decision in ("keep testing", "b better")


def test_cluster_robust_coverage_and_sequential_errors_over_repetitions() -> None:
    truth = 0.05
    repetitions = 200
    clustered = naive = wrong_sign = 0
    for seed in range(repetitions):
        rows = sticky_stream(1_000 + seed, 0.70, 0.70 + truth)
        comparison = ab_report(rows, min_effect=0.05).comparisons[0]
        clustered += comparison.ci[0] <= truth <= comparison.ci[1]
        low, high = naive_interval(rows)
        naive += low <= truth <= high
        wrong_sign += comparison.decision == "b worse"
    clustered_coverage = clustered / repetitions
    naive_coverage = naive / repetitions
    print(f"coverage: cluster-robust {clustered_coverage:.3f}, naive {naive_coverage:.3f}")
    assert 0.92 <= clustered_coverage <= 0.98
    assert naive_coverage < 0.90
    assert wrong_sign / repetitions <= 0.05


def test_sequential_decisions_on_the_null_stay_within_alpha() -> None:
    repetitions = 200
    decided = per_request_decided = 0
    for seed in range(repetitions):
        rows = sticky_stream(5_000 + seed, 0.70, 0.70)
        comparison = ab_report(rows, min_effect=0.05, alpha=0.05).comparisons[0]
        decided += comparison.decision in ("b better", "b worse")
        # The same test fed per-request values, at every tenth of the stream.
        test = SequentialTest(0.05, alpha=0.05)
        rated = rows.labelled & ~rows.error
        y = rows.correct.astype(np.float64)
        in_b = rows.variant == "b"
        for stop in np.linspace(rows.rows / 10, rows.rows, 10).astype(int):
            seen = rated & (np.arange(rows.rows) < stop)
            y_a, y_b = y[seen & ~in_b], y[seen & in_b]
            test.update(y_a.size, y_a.sum(), y_a @ y_a, y_b.size, y_b.sum(), y_b @ y_b)
        per_request_decided += test.state.decision != "continue"
    print(f"null decisions: per unit {decided}, per request {per_request_decided} of 200")
    assert decided / repetitions <= 0.05
    assert per_request_decided > decided


def test_required_sample_size_grows_with_the_design_effect() -> None:
    clustered = ab_report(sticky_stream(21, 0.70, 0.72, icc=0.2), min_effect=0.03)
    per_request = ab_report(sticky_stream(21, 0.70, 0.72, keyed=False), min_effect=0.03)
    sticky = clustered.comparisons[0]
    alone = per_request.comparisons[0]
    # Without keys every request is its own unit: the design effect is exactly 1.
    assert alone.design_effect == pytest.approx(1.0, abs=1e-9)
    assert alone.mean_unit_rows == 1.0
    assert per_request.variants[0].units == per_request.variants[0].requests
    assert sticky.design_effect > 2.0
    control_rate = clustered.variants[0].quality
    assert sticky.required_per_variant == required_sample_size(
        control_rate, 0.03, design_effect=sticky.design_effect
    )
    assert alone.required_per_variant == required_sample_size(per_request.variants[0].quality, 0.03)
    assert sticky.required_per_variant is not None and alone.required_per_variant is not None
    assert sticky.required_per_variant > 2 * alone.required_per_variant


def test_regression_ab_report_uses_mae() -> None:
    rng = np.random.default_rng(31)
    n = 4000
    unit = rng.integers(0, 800, n)
    in_b = unit % 2 == 1
    abs_error = np.abs(rng.normal(0.0, np.where(in_b, 1.0, 1.5), n))
    rows = VariantColumns(
        kind="regression",
        variant=texts(np.where(in_b, "new", "old")),
        entity_key=texts(np.char.add("u", unit.astype(str))),
        request_id=texts(np.arange(n).astype(str)),
        error=np.zeros(n, dtype=bool),
        latency_ms=np.full(n, 4.0),
        output_value=rng.normal(10.0, 3.0, n),
        output_label=texts(np.full(n, "")),
        labelled=np.ones(n, dtype=bool),
        correct=np.zeros(n, dtype=bool),
        abs_error=abs_error,
    )
    report = ab_report(rows, min_effect=0.1, control="old")
    assert report.metric == "mae"
    assert [v.variant for v in report.variants] == ["new", "old"]
    (comparison,) = report.comparisons
    assert (comparison.variant, comparison.control) == ("new", "old")
    true_difference = (1.0 - 1.5) * math.sqrt(2.0 / math.pi)
    assert comparison.ci[0] <= true_difference <= comparison.ci[1]
    assert comparison.decision == "b better"
    assert math.isnan(report.variants[0].label_distance)
    sd = float(abs_error.std(ddof=1))
    expected = math.ceil(fixed_horizon_n(0.1, sd) * max(1.0, comparison.design_effect) - 1e-9)
    assert comparison.required_per_variant == expected


def test_ab_report_edge_cases_do_not_raise() -> None:
    nothing, no_text, no_flags = np.zeros(0), texts([]), np.zeros(0, dtype=bool)
    empty = VariantColumns(
        kind="binary",
        variant=no_text,
        entity_key=no_text,
        request_id=no_text,
        error=no_flags,
        latency_ms=nothing,
        output_value=nothing,
        output_label=no_text,
        labelled=no_flags,
        correct=no_flags,
        abs_error=nothing,
    )
    report = ab_report(empty, min_effect=0.05)
    assert report.variants == () and report.comparisons == () and report.control == ""
    waiting = ab_report(empty, min_effect=0.05, control="a")
    assert [v.variant for v in waiting.variants] == ["a"] and waiting.comparisons == ()
    assert waiting.variants[0].requests == 0 and math.isnan(waiting.variants[0].error_rate)
    # A named control without traffic yet: it appears, and the comparison keeps testing.
    rows = sticky_stream(41, 0.7, 0.7, units=20)
    report = ab_report(rows, min_effect=0.05, control="0-control")
    assert report.control == "0-control"
    assert report.variants[0].requests == 0
    assert math.isnan(report.variants[0].quality)
    assert all(c.decision == "keep testing" for c in report.comparisons)
    assert all(c.required_per_variant is None for c in report.comparisons)
    assert all(math.isnan(c.difference) for c in report.comparisons)
    # A key seen in both variants is counted.
    keys = rows.entity_key.copy()
    keys[(rows.variant == "a").argmax()] = keys[(rows.variant == "b").argmax()]
    assert ab_report(replace(rows, entity_key=keys), 0.05).units_in_several_variants == 1
    with pytest.raises(ValueError, match="min_effect"):
        ab_report(rows, min_effect=0.0)
