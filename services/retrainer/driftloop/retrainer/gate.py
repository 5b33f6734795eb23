"""The champion/challenger gate: promote only a challenger that is significantly better.

Both models are scored on the same holdout rows (the newest slice of the training window,
which training never saw), so the comparison is paired: most row-to-row variation cancels.

- Primary, classifiers: accuracy, McNemar's exact test on the rows where exactly one of
  the two is right. Regression: absolute error, Wilcoxon's signed-rank test on the per-row
  difference |e_champion| - |e_challenger|, the effect read relative to the champion's MAE.
  Pass when the effect (challenger better is positive) reaches the policy's margin and the
  one-sided p-value (half the two-sided one, in the challenger's favour) is below alpha.
  A margin of 0.01 asks for a point of accuracy; significance alone would promote a
  challenger that is better by a hair on a large holdout.
- Secondary guard: log loss (classifiers) or squared error (regression), per row, paired
  bootstrap; the challenger fails when the upper end of the 95% interval of its relative
  increase exceeds the tolerance (it is probably worse by more than that).
- Segment guard: per value of a configured categorical feature with enough rows, the
  primary test within the segment; the challenger fails when it is worse there by more
  than the segment tolerance and significantly so (p < alpha, two-sided). A model that
  helps the majority while hurting one segment is refused, the segment named.
Every number is kept in the verdict, which is stored with the run and the version.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from driftloop.stats.paired import PairedResult, mcnemar, paired_bootstrap, wilcoxon_signed_rank

FloatArray = npt.NDArray[np.float64]
TextArray = npt.NDArray[np.str_]
EPS = 1e-15
BOOTSTRAP_ROWS = 20_000
MIN_SEGMENT_ROWS = 10  # fewer cannot be tested, whatever the policy says


@dataclass(frozen=True)
class GateRules:
    margin: float
    alpha: float
    secondary_tolerance: float
    segment_tolerance: float
    segment_min_rows: int
    seed: int = 0


@dataclass(frozen=True)
class Scored:
    """One model's answers on the holdout rows. Classifiers: the predicted label and the
    probability given to the true label; regression: the predicted value."""

    labels: TextArray | None = None
    truth_probability: FloatArray | None = None
    values: FloatArray | None = None


@dataclass(frozen=True)
class GateCheck:
    name: str
    passed: bool
    metric: str
    test: str
    champion: float
    challenger: float
    effect: float
    ci_low: float
    ci_high: float
    p_value: float
    rows: int
    segment: str = ""
    detail: str = ""


@dataclass(frozen=True)
class Verdict:
    passed: bool
    checks: list[GateCheck] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)


def judge(
    regression: bool,
    truth_labels: TextArray | None,
    truth_values: FloatArray | None,
    champion: Scored,
    challenger: Scored,
    rules: GateRules,
    segments: TextArray | None = None,
) -> Verdict:
    """The verdict of the gate on one holdout."""
    if regression:
        assert truth_values is not None and champion.values is not None
        assert challenger.values is not None
        primary = _regression_primary(truth_values, champion.values, challenger.values, rules)
        secondary = _secondary(
            "squared error",
            (champion.values - truth_values) ** 2,
            (challenger.values - truth_values) ** 2,
            rules,
        )
    else:
        assert truth_labels is not None and champion.labels is not None
        assert challenger.labels is not None
        assert champion.truth_probability is not None
        assert challenger.truth_probability is not None
        primary = _accuracy("primary", truth_labels, champion.labels, challenger.labels, rules)
        secondary = _secondary(
            "log loss",
            -np.log(np.clip(champion.truth_probability, EPS, 1.0)),
            -np.log(np.clip(challenger.truth_probability, EPS, 1.0)),
            rules,
        )
    checks = [primary, secondary]
    if segments is not None:
        checks += _segments(
            regression, segments, truth_labels, truth_values, champion, challenger, rules
        )
    reasons = [check.detail for check in checks if not check.passed]
    return Verdict(not reasons, checks, reasons)


def _one_sided(result: PairedResult) -> float:
    """The p-value that the challenger is better: half the two-sided one when the test's
    own statistic leans the challenger's way, else at least 1/2 (1 on an exact tie). The
    side comes from the statistic, not the mean effect: for Wilcoxon the ranks can lean
    the other way from the mean (a few large gains, many small losses)."""
    if result.statistic > 0:
        return result.p_value / 2.0
    if result.statistic < 0:
        return 1.0 - result.p_value / 2.0
    return 1.0


def _accuracy(
    name: str,
    truth: TextArray,
    champion: TextArray,
    challenger: TextArray,
    rules: GateRules,
    segment: str = "",
) -> GateCheck:
    right_a, right_b = champion == truth, challenger == truth
    result = mcnemar(right_a, right_b)
    acc_a, acc_b = float(right_a.mean()), float(right_b.mean())
    if name == "primary":
        p = _one_sided(result)
        passed = result.effect >= rules.margin and p < rules.alpha
        detail = (
            f"accuracy {acc_b:.4f} vs the champion's {acc_a:.4f} on {len(truth):,} holdout rows: "
            f"{result.effect:+.4f} (95% CI {result.ci_low:+.4f} to {result.ci_high:+.4f}), "
            f"one-sided McNemar p {p:.3g}; needs at least {rules.margin:+.4f} with p < "
            f"{rules.alpha:g}"
        )
    else:
        p = result.p_value
        harmed = result.effect < -rules.segment_tolerance and result.statistic < 0
        passed = not (harmed and p < rules.alpha)
        detail = (
            f"segment {segment}: accuracy {acc_b:.4f} vs the champion's {acc_a:.4f} on "
            f"{len(truth):,} rows ({result.effect:+.4f}, McNemar p {p:.3g}); worse by more "
            f"than {rules.segment_tolerance:.4f} with p < {rules.alpha:g} is refused"
        )
    return GateCheck(
        name=name,
        passed=passed,
        metric="accuracy",
        test="mcnemar",
        champion=acc_a,
        challenger=acc_b,
        effect=result.effect,
        ci_low=result.ci_low,
        ci_high=result.ci_high,
        p_value=p,
        rows=len(truth),
        segment=segment,
        detail=detail,
    )


def _regression_primary(
    truth: FloatArray,
    champion: FloatArray,
    challenger: FloatArray,
    rules: GateRules,
    name: str = "primary",
    segment: str = "",
) -> GateCheck:
    error_a, error_b = np.abs(champion - truth), np.abs(challenger - truth)
    result = wilcoxon_signed_rank(error_a, error_b)
    mae_a, mae_b = float(error_a.mean()), float(error_b.mean())
    scale = mae_a if mae_a > 0 else 1.0
    relative = result.effect / scale
    low, high = result.ci_low / scale, result.ci_high / scale
    if name == "primary":
        p = _one_sided(result)
        passed = relative >= rules.margin and p < rules.alpha
        detail = (
            f"MAE {mae_b:.4g} vs the champion's {mae_a:.4g} on {len(truth):,} holdout rows: "
            f"{relative:+.2%} better (95% CI {low:+.2%} to {high:+.2%}), one-sided Wilcoxon p "
            f"{p:.3g}; needs at least {rules.margin:.2%} with p < {rules.alpha:g}"
        )
    else:
        p = result.p_value
        worse = relative < -rules.segment_tolerance and result.statistic < 0
        passed = not (worse and p < rules.alpha)
        detail = (
            f"segment {segment}: MAE {mae_b:.4g} vs the champion's {mae_a:.4g} on "
            f"{len(truth):,} rows ({relative:+.2%}, Wilcoxon p {p:.3g})"
        )
    return GateCheck(
        name=name,
        passed=passed,
        metric="mae",
        test="wilcoxon",
        champion=mae_a,
        challenger=mae_b,
        effect=relative,
        ci_low=low,
        ci_high=high,
        p_value=p,
        rows=len(truth),
        segment=segment,
        detail=detail,
    )


def _secondary(metric: str, loss_a: FloatArray, loss_b: FloatArray, rules: GateRules) -> GateCheck:
    # The bootstrap costs rows x resamples; past BOOTSTRAP_ROWS the mean difference is
    # normal enough that the t interval (from the Wilcoxon result) is as good.
    if len(loss_a) <= BOOTSTRAP_ROWS:
        result = paired_bootstrap(loss_a, loss_b, seed=rules.seed, resamples=1000)
        test = "paired_bootstrap"
    else:
        result = wilcoxon_signed_rank(loss_a, loss_b)
        test = "paired_t_interval"
    mean_a, mean_b = float(loss_a.mean()), float(loss_b.mean())
    scale = mean_a if mean_a > 0 else 1.0
    # effect > 0: the challenger's loss is lower. Its relative increase is -effect / scale,
    # and the worst plausible increase is -ci_low / scale.
    worst_increase = -result.ci_low / scale
    passed = worst_increase <= rules.secondary_tolerance
    detail = (
        f"{metric} {mean_b:.4g} vs the champion's {mean_a:.4g}: the challenger's could be up "
        f"to {worst_increase:+.2%} higher (95% bootstrap CI); at most "
        f"{rules.secondary_tolerance:.0%} is accepted"
    )
    return GateCheck(
        name="secondary",
        passed=passed,
        metric=metric.replace(" ", "_"),
        test=test,
        champion=mean_a,
        challenger=mean_b,
        effect=result.effect / scale,
        ci_low=result.ci_low / scale,
        ci_high=result.ci_high / scale,
        p_value=result.p_value,
        rows=len(loss_a),
        detail=detail,
    )


def _segments(
    regression: bool,
    segments: TextArray,
    truth_labels: TextArray | None,
    truth_values: FloatArray | None,
    champion: Scored,
    challenger: Scored,
    rules: GateRules,
) -> list[GateCheck]:
    checks = []
    values, counts = np.unique(segments, return_counts=True)
    for value, count in zip(values.tolist(), counts.tolist(), strict=True):
        if count < max(rules.segment_min_rows, MIN_SEGMENT_ROWS):
            continue
        rows = segments == value
        if regression:
            assert truth_values is not None and champion.values is not None
            assert challenger.values is not None
            checks.append(
                _regression_primary(
                    truth_values[rows],
                    champion.values[rows],
                    challenger.values[rows],
                    rules,
                    "segment",
                    str(value),
                )
            )
        else:
            assert truth_labels is not None
            assert champion.labels is not None and challenger.labels is not None
            checks.append(
                _accuracy(
                    "segment",
                    truth_labels[rows],
                    champion.labels[rows],
                    challenger.labels[rows],
                    rules,
                    str(value),
                )
            )
    return checks
