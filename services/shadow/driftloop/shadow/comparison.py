"""Shadow versus live on the same requests: agreement, output, latency, errors and quality.

Input is one row per mirrored request that live answered or tried and the shadow answered
or tried (`PairedColumns`); the statistics are paired, because both versions saw exactly the
same request. A failed side (`*_error`) has no output: agreement, output differences,
latency and quality use the `compared` rows, where both sides answered; error rates use
every row.

Agreement. Classifiers: the share of compared rows with equal labels. Regression: the share
with |shadow - live| <= tol * max(|live|, median |live|), tol = `regression_tolerance`
(default 0.01): within 1% of the live value where the value is of typical size, and within
1% of the typical size (the median absolute live value over the compared rows) where the
live value is near zero, so a value near 0 is not held to an impossibly tight relative bound
and a scale change (dollars to cents) changes nothing. A non-finite value never agrees. The
interval is Wilson's (`wilson_interval`).

Output differences are shadow - live of `*_value` (a score, or the regression value) over
the compared rows where both are finite: mean, 5th/50th/95th percentiles, mean |difference|.
Latency percentiles are over the compared rows (the same requests on both sides, so the p99
delta, shadow - live, compares like with like; a failed call's latency, often a timeout, is
left out). Error rates are over all rows; their difference (shadow - live) is paired, so its
interval and p-value come from the exact McNemar test on "answered" (`mcnemar` with
answered = correct, whose effect is live rate - shadow rate: the sign is flipped here).

Quality (labelled compared rows with a usable truth). Classifiers: the truth is
`truth_label`, or `truth_value` written as a class name (1.0 -> "1", drift.outcomes' rule)
when the label is empty; accuracy per side and the exact McNemar test, effect
accuracy(shadow) - accuracy(live). Regression: the truth is `truth_value`, or `truth_label`
read as a number; MAE per side and the Wilcoxon signed-rank test on |live error| - |shadow
error|, effect the mean of that difference (MAE(live) - MAE(shadow), t interval). Both follow
driftloop.stats.paired's convention: a positive effect means the shadow is better.

Verdict (at `alpha`, default 0.05): "insufficient" below `min_labelled` (default 30, at least
2) labelled compared rows, which includes compared = 0; otherwise "shadow better" or "shadow
worse" when the paired test's p-value is below alpha, by the sign of its statistic (for the
Wilcoxon test the rank statistic, which is what was tested; the reported mean effect could in
principle have the other sign), else "no significant difference". The verdict is about
quality only: error rates and latency are reported beside it for the caller's own limits.

Segments: for each categorical feature and value with at least `min_segment_rows` compared
rows, the disagreement rate (1 - agreement) with its Wilson interval, sorted by disagreement
(then by rows), the top `max_segments` over all features. It ranks where to look; it is not
a test, and with many small segments the top of the list is partly noise.

Nothing here raises on empty input: undefined numbers are NaN.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from driftloop.shadow.columns import (
    CLASSIFIERS,
    NAN_PAIR,
    BoolArray,
    FloatArray,
    TextArray,
    coerce_columns,
)
from driftloop.stats.experiments import check_confidence, wilson_interval
from driftloop.stats.paired import mcnemar, wilcoxon_signed_rank

Kind = Literal["binary", "multiclass", "regression"]
Verdict = Literal["insufficient", "no significant difference", "shadow better", "shadow worse"]

_FLOAT_FIELDS = (
    "live_value",
    "shadow_value",
    "live_latency_ms",
    "shadow_latency_ms",
    "truth_value",
)
_TEXT_FIELDS = ("live_label", "shadow_label", "truth_label")
_BOOL_FIELDS = ("live_error", "shadow_error", "labelled")


@dataclass(frozen=True)
class PairedColumns:
    """One row per mirrored request, aligned across every column. `*_value` is the score
    (classifiers) or the value (regression); `*_label` the class ("" for regression);
    `*_error` whether that side's call failed (then its output is meaningless);
    `truth_label` "" and `truth_value` NaN when there is no label. Columns are converted to
    numpy arrays of the documented dtypes on construction."""

    kind: str
    live_value: FloatArray
    shadow_value: FloatArray
    live_label: TextArray
    shadow_label: TextArray
    live_latency_ms: FloatArray
    shadow_latency_ms: FloatArray
    live_error: BoolArray
    shadow_error: BoolArray
    truth_label: TextArray
    truth_value: FloatArray
    labelled: BoolArray

    def __post_init__(self) -> None:
        coerce_columns(self, _FLOAT_FIELDS, _TEXT_FIELDS, _BOOL_FIELDS)

    @property
    def rows(self) -> int:
        return int(self.live_value.size)

    @classmethod
    def empty(cls, kind: str) -> PairedColumns:
        """No rows at all."""
        floats = np.zeros(0)
        texts = np.zeros(0, dtype=object)
        flags = np.zeros(0, dtype=np.bool_)
        return cls(
            kind, floats, floats, texts, texts, floats, floats, flags, flags, texts, floats, flags
        )


@dataclass(frozen=True)
class Segment:
    """One categorical feature value: compared rows and the share where the sides disagree."""

    feature: str
    value: str
    compared: int
    disagreement: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class Comparison:
    """Shadow versus live (see the module docstring). Differences are shadow - live except
    `effect`, which is positive when the shadow is better. NaN where undefined."""

    kind: str
    rows: int
    compared: int
    # Agreement of the answers on the compared rows.
    agreement: float
    agreement_ci: tuple[float, float]
    agreement_rule: str
    # Output differences, shadow - live, on the compared rows.
    diff_mean: float
    diff_p05: float
    diff_p50: float
    diff_p95: float
    diff_mean_abs: float
    # Latency on the compared rows, milliseconds.
    live_p50_ms: float
    live_p99_ms: float
    shadow_p50_ms: float
    shadow_p99_ms: float
    p99_delta_ms: float
    # Failed calls over all rows; the delta is shadow - live with McNemar's interval.
    live_error_rate: float
    shadow_error_rate: float
    error_rate_delta: float
    error_delta_ci: tuple[float, float]
    error_delta_p_value: float
    # Quality on the labelled compared rows: accuracy (classifiers) or MAE (regression).
    labelled: int
    metric: str
    live_quality: float
    shadow_quality: float
    effect: float
    effect_ci: tuple[float, float]
    p_value: float
    test: str
    verdict: Verdict
    segments: tuple[Segment, ...]


def compare(
    pairs: PairedColumns,
    categorical: Mapping[str, TextArray],
    confidence: float = 0.95,
    *,
    alpha: float = 0.05,
    min_labelled: int = 30,
    min_segment_rows: int = 30,
    max_segments: int = 20,
    regression_tolerance: float = 0.01,
) -> Comparison:
    """Compare the shadow with live on the same requests (see the module docstring).
    `categorical` maps feature names to text columns aligned with `pairs`."""
    check_confidence(confidence)
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if min_labelled < 1 or min_segment_rows < 1 or max_segments < 0:
        raise ValueError("min_labelled and min_segment_rows must be positive, max_segments >= 0")
    if not regression_tolerance >= 0.0:
        raise ValueError(f"regression_tolerance must be >= 0, got {regression_tolerance}")
    classifier = pairs.kind in CLASSIFIERS
    answered = ~pairs.live_error & ~pairs.shadow_error
    compared = int(np.count_nonzero(answered))
    agree = _agreement(pairs, answered, regression_tolerance)
    agreeing = int(np.count_nonzero(agree))
    if classifier:
        rule = "equal labels"
    else:
        rule = f"|shadow - live| <= {regression_tolerance:g} * max(|live|, median |live|)"
    diffs = _differences(pairs, answered)
    live_latency = _quantiles(pairs.live_latency_ms[answered], (0.5, 0.99))
    shadow_latency = _quantiles(pairs.shadow_latency_ms[answered], (0.5, 0.99))
    errors = _error_rates(pairs, confidence)
    quality = _quality(pairs, answered, confidence, max(min_labelled, 2))
    verdict: Verdict
    if quality.test == "":
        verdict = "insufficient"
    elif quality.p_value < alpha:
        verdict = "shadow better" if quality.statistic > 0 else "shadow worse"
    else:
        verdict = "no significant difference"
    return Comparison(
        kind=pairs.kind,
        rows=pairs.rows,
        compared=compared,
        agreement=agreeing / compared if compared else math.nan,
        agreement_ci=wilson_interval(agreeing, compared, confidence) if compared else NAN_PAIR,
        agreement_rule=rule,
        diff_mean=diffs[0],
        diff_p05=diffs[1],
        diff_p50=diffs[2],
        diff_p95=diffs[3],
        diff_mean_abs=diffs[4],
        live_p50_ms=live_latency[0],
        live_p99_ms=live_latency[1],
        shadow_p50_ms=shadow_latency[0],
        shadow_p99_ms=shadow_latency[1],
        p99_delta_ms=shadow_latency[1] - live_latency[1],
        live_error_rate=errors.live_rate,
        shadow_error_rate=errors.shadow_rate,
        error_rate_delta=errors.shadow_rate - errors.live_rate,
        error_delta_ci=errors.delta_ci,
        error_delta_p_value=errors.p_value,
        labelled=quality.labelled,
        metric="accuracy" if classifier else "mae",
        live_quality=quality.live,
        shadow_quality=quality.shadow,
        effect=quality.effect,
        effect_ci=quality.effect_ci,
        p_value=quality.p_value,
        test=quality.test,
        verdict=verdict,
        segments=_segments(
            categorical, pairs.rows, answered, agree, confidence, min_segment_rows, max_segments
        ),
    )


def _agreement(pairs: PairedColumns, answered: BoolArray, tolerance: float) -> BoolArray:
    """Per compared row (in row order), whether the two answers agree."""
    if pairs.kind in CLASSIFIERS:
        same = pairs.live_label[answered] == pairs.shadow_label[answered]
        return np.asarray(same, dtype=np.bool_).reshape(-1)
    live = pairs.live_value[answered]
    shadow = pairs.shadow_value[answered]
    magnitude = np.abs(live)
    finite = magnitude[np.isfinite(magnitude)]
    scale = float(np.median(finite)) if finite.size else math.nan
    with np.errstate(invalid="ignore"):
        bound = tolerance * np.maximum(magnitude, scale)
        agree: BoolArray = np.abs(shadow - live) <= bound
    return agree


def _differences(pairs: PairedColumns, answered: BoolArray) -> tuple[float, ...]:
    """mean, p05, p50, p95 and mean |.| of shadow - live over finite compared rows."""
    d = pairs.shadow_value[answered] - pairs.live_value[answered]
    d = d[np.isfinite(d)]
    if d.size == 0:
        return (math.nan,) * 5
    p05, p50, p95 = (float(q) for q in np.quantile(d, (0.05, 0.5, 0.95)))
    return float(d.mean()), p05, p50, p95, float(np.abs(d).mean())


def _quantiles(values: FloatArray, levels: tuple[float, ...]) -> tuple[float, ...]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return (math.nan,) * len(levels)
    return tuple(float(q) for q in np.quantile(finite, levels))


@dataclass(frozen=True)
class _Errors:
    live_rate: float
    shadow_rate: float
    delta_ci: tuple[float, float]
    p_value: float


def _error_rates(pairs: PairedColumns, confidence: float) -> _Errors:
    if pairs.rows == 0:
        return _Errors(math.nan, math.nan, NAN_PAIR, math.nan)
    # mcnemar's effect is answered(shadow) - answered(live) = live error - shadow error.
    test = mcnemar(~pairs.live_error, ~pairs.shadow_error, confidence)
    return _Errors(
        live_rate=float(pairs.live_error.mean()),
        shadow_rate=float(pairs.shadow_error.mean()),
        delta_ci=(-test.ci_high, -test.ci_low),
        p_value=test.p_value,
    )


@dataclass(frozen=True)
class _Quality:
    labelled: int
    live: float
    shadow: float
    effect: float
    effect_ci: tuple[float, float]
    p_value: float
    statistic: float
    test: str


def _quality(
    pairs: PairedColumns, answered: BoolArray, confidence: float, min_labelled: int
) -> _Quality:
    usable = answered & pairs.labelled
    if pairs.kind in CLASSIFIERS:
        truth = _truth_labels(pairs.truth_label, pairs.truth_value)
        usable &= truth != ""
        live_ok = np.asarray(pairs.live_label[usable] == truth[usable], dtype=np.bool_)
        shadow_ok = np.asarray(pairs.shadow_label[usable] == truth[usable], dtype=np.bool_)
        n = int(live_ok.size)
        if n == 0:
            return _no_quality(0, math.nan, math.nan)
        live, shadow = float(live_ok.mean()), float(shadow_ok.mean())
        if n < min_labelled:
            return _no_quality(n, live, shadow)
        result = mcnemar(live_ok, shadow_ok, confidence)
    else:
        values = _truth_values(pairs.truth_label, pairs.truth_value)
        live_loss = np.abs(pairs.live_value - values)
        shadow_loss = np.abs(pairs.shadow_value - values)
        usable &= np.isfinite(live_loss) & np.isfinite(shadow_loss)
        live_loss, shadow_loss = live_loss[usable], shadow_loss[usable]
        n = int(live_loss.size)
        if n == 0:
            return _no_quality(0, math.nan, math.nan)
        live, shadow = float(live_loss.mean()), float(shadow_loss.mean())
        if n < min_labelled:
            return _no_quality(n, live, shadow)
        result = wilcoxon_signed_rank(live_loss, shadow_loss, confidence)
    return _Quality(
        labelled=n,
        live=live,
        shadow=shadow,
        effect=result.effect,
        effect_ci=(result.ci_low, result.ci_high),
        p_value=result.p_value,
        statistic=result.statistic,
        test=result.test,
    )


def _no_quality(n: int, live: float, shadow: float) -> _Quality:
    return _Quality(n, live, shadow, math.nan, NAN_PAIR, math.nan, math.nan, "")


def _truth_labels(labels: TextArray, values: FloatArray) -> TextArray:
    """The true class per row: the label, else the numeric truth as a class name, else ""."""
    text = labels.astype(np.str_)
    missing = (text == "") & np.isfinite(values)
    if missing.any():
        text = text.astype(object)
        text[missing] = [f"{value:g}" for value in values[missing]]
    return np.asarray(text, dtype=object)


def _truth_values(labels: TextArray, values: FloatArray) -> FloatArray:
    """The true value per row: the number, else the label read as a number, else NaN."""
    result = values.copy()
    missing = ~np.isfinite(result) & (labels.astype(np.str_) != "")
    for index in np.flatnonzero(missing):
        try:
            result[index] = float(labels[index])
        except ValueError:
            result[index] = math.nan
    return result


def _segments(
    categorical: Mapping[str, TextArray],
    rows: int,
    answered: BoolArray,
    agree: BoolArray,
    confidence: float,
    min_rows: int,
    limit: int,
) -> tuple[Segment, ...]:
    disagree = (~agree).astype(np.float64)
    found: list[Segment] = []
    for feature, column in categorical.items():
        values = np.asarray(column)
        if values.shape != (rows,):
            raise ValueError(
                f"categorical feature {feature!r} has shape {values.shape}, expected ({rows},)"
            )
        if not agree.size:
            continue
        names, inverse = np.unique(values[answered].astype(np.str_), return_inverse=True)
        inverse = inverse.reshape(-1)
        sizes = np.bincount(inverse, minlength=names.size)
        misses = np.bincount(inverse, weights=disagree, minlength=names.size)
        for index in np.flatnonzero(sizes >= min_rows):
            size, missed = int(sizes[index]), round(float(misses[index]))
            low, high = wilson_interval(missed, size, confidence)
            found.append(Segment(feature, str(names[index]), size, missed / size, low, high))
    found.sort(key=lambda s: (-s.disagreement, -s.compared, s.feature, s.value))
    return tuple(found[:limit])
