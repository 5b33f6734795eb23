"""A/B test reports: per-variant traffic and quality, and each variant against the control.

Input is one row per request, in arrival order (`VariantColumns`). The unit of analysis is
the entity key (a user, a device) that the router assigns to one variant and keeps there
("sticky" assignment); a request without a key is its own unit (its request id). Rows of
one unit are correlated (the same user is easy or hard for every model), so per-request
statistics treat one user's hundred requests as a hundred independent draws and report
intervals that are too narrow by the square root of the design effect.

Quality is accuracy (`correct`, classifiers) or MAE (`abs_error`, regression) over the
labelled rows that did not fail. Per variant, its interval is the cluster-robust one of
driftloop.stats.experiments (ratio estimator, delta-method variance over units): it is
`clustered_difference(...).ci_a` with the variant as both groups, i.e. exactly that module's
per-group interval, not a re-derivation. Against the control (the first variant in sorted
order unless one is named) the difference b - control, its interval, z and p-value are
`clustered_difference`'s. For comparison `naive_ci` is what per-request analysis would say:
`proportion_difference` (Newcombe) for classifiers, the same delta method with one unit per
row for regression.

Design effect: the ratio of the clustered to the per-row variance of the difference, both
from `clustered_difference` (units as clusters, then rows as clusters). With one row per
unit the two are the same formula, so it is exactly 1. It is the empirical version of
1 + (mean unit size - 1) * ICC, and it needs no equal unit sizes; `implied_icc` inverts that
formula for reading. It is noisy with few units (tens), and clipped below at 1 for the
sample size. The required labelled rows per variant to detect `min_effect` (at `alpha`, with
`power`) are `required_sample_size(control accuracy, min_effect, design_effect=...)` for
classifiers (with -min_effect if control + min_effect leaves (0, 1)), and for regression
`fixed_horizon_n(min_effect, sd)` of the two-sample z-test times the design effect, rounded
up, with sd the per-row standard deviation of the absolute errors of both variants. None
when undefined (no labels, a control accuracy of 0 or 1, no spread).

Sequential test. A report is looked at again and again while the test runs, so the
fixed-horizon p-value above is not a stopping rule. The decision comes from `SequentialTest`
(mSPRT: always-valid p-value and confidence sequence), replayed over the rows in arrival
order at fixed looks: after 100 rows of the experiment, then every 10% more, and at the last
row (looks at absolute row counts, so a later report replays the looks of an earlier one).
Each look feeds the per-unit totals: per arm, the number of units with a labelled row so far,
and the sum and sum of squares of each unit's mean (its accuracy or MAE so far). Why per unit:
the test's variance is the plug-in s^2 / n of its observations, which is right only if they
are independent. Requests of one sticky unit are not; feeding requests would understate the
variance by the design effect, so the likelihood ratio would grow as if there were several
times more evidence, and on an A/A test it would cross 1/alpha far more often than alpha.
Units are independent (each is one draw of a user, assigned one variant at random), so the
per-unit means are independent draws and s^2 / n is their honest variance. What it assumes:
units independent and assigned independently of their outcome, a fixed split, and each
unit's mean an exchangeable draw. Two costs: the estimand is the unit-weighted mean (every
user counts once), which differs from the row-weighted ratio mean of `difference` when heavy
units behave differently from light ones (reported apart as `sequential_difference`); and a
unit's mean changes while its requests arrive, so the looks are not the independent
increments of the textbook martingale, which makes the time-uniform guarantee approximate
(the plug-in variance already does). A unit seen in several variants (broken stickiness,
counted in `units_in_several_variants`) is a separate unit in each.

Decision per variant: "b better" / "b worse" once the sequential test rejects (final, by
the sign of the difference at that look; for MAE lower is better); "no difference" when
the confidence sequence lies inside (-min_effect, +min_effect), i.e. an effect of the size
that matters is ruled out; "keep testing" otherwise.

Output distance: `output_distance` (Jensen-Shannon, bits) of the variant's `output_value`
against the control's, over requests that did not fail; for classifiers also
`label_distance`, the Jensen-Shannon distance of the predicted-label shares. NaN when a side
has no output.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from driftloop.shadow.columns import (
    CLASSIFIERS,
    NAN_PAIR,
    BoolArray,
    FloatArray,
    TextArray,
    coerce_columns,
)
from driftloop.stats.divergence import js_distance, output_distance
from driftloop.stats.experiments import (
    GroupDifference,
    check_confidence,
    clustered_difference,
    proportion_difference,
    required_sample_size,
)
from driftloop.stats.sequential import SequentialState, SequentialTest, fixed_horizon_n

IntArray = npt.NDArray[np.intp]

Decision = Literal["keep testing", "b better", "b worse", "no difference"]
FIRST_LOOK = 100
"""Rows of the experiment at the first sequential look."""
LOOK_GROWTH = 1.1
"""Each further look comes after this factor more rows."""

_FLOAT_FIELDS = ("latency_ms", "output_value", "abs_error")
_TEXT_FIELDS = ("variant", "entity_key", "request_id", "output_label")
_BOOL_FIELDS = ("error", "labelled", "correct")


@dataclass(frozen=True)
class VariantColumns:
    """One row per request, in arrival order. `entity_key` "" means the request is its own
    unit (`request_id`); `correct` is read for classifiers, `abs_error` for regression, both
    only where `labelled`. Columns are converted to numpy arrays on construction."""

    kind: str
    variant: TextArray
    entity_key: TextArray
    request_id: TextArray
    error: BoolArray
    latency_ms: FloatArray
    output_value: FloatArray
    output_label: TextArray
    labelled: BoolArray
    correct: BoolArray
    abs_error: FloatArray

    def __post_init__(self) -> None:
        coerce_columns(self, _FLOAT_FIELDS, _TEXT_FIELDS, _BOOL_FIELDS)

    @property
    def rows(self) -> int:
        return int(self.variant.size)


@dataclass(frozen=True)
class VariantSummary:
    """One variant's traffic and quality. `quality` is accuracy or MAE over `labelled`
    rows (labelled, not failed) of `labelled_units` units, with its cluster-robust interval;
    the distances are to the control (0 for the control itself)."""

    variant: str
    requests: int
    units: int
    error_rate: float
    latency_p50_ms: float
    latency_p99_ms: float
    output_mean: float
    output_distance: float
    label_distance: float
    labelled: int
    labelled_units: int
    quality: float
    quality_ci: tuple[float, float]


@dataclass(frozen=True)
class VariantComparison:
    """`variant` minus `control` in the report's metric (see the module docstring)."""

    variant: str
    control: str
    difference: float
    ci: tuple[float, float]
    z: float
    p_value: float
    naive_ci: tuple[float, float]
    design_effect: float
    mean_unit_rows: float
    implied_icc: float
    sequential_difference: float
    sequential_p_value: float
    sequential_ci: tuple[float, float]
    sequential_looks: int
    required_per_variant: int | None
    decision: Decision


@dataclass(frozen=True)
class ABReport:
    kind: str
    metric: str
    control: str
    min_effect: float
    confidence: float
    alpha: float
    variants: tuple[VariantSummary, ...]
    comparisons: tuple[VariantComparison, ...]
    units_in_several_variants: int


def ab_report(
    rows: VariantColumns,
    min_effect: float,
    confidence: float = 0.95,
    alpha: float = 0.05,
    *,
    control: str | None = None,
    power: float = 0.8,
) -> ABReport:
    """Per-variant statistics and each variant against the control (see the module
    docstring). `min_effect` is the smallest difference that matters, in the metric's units
    (accuracy or MAE), positive. A named `control` without rows yet still appears."""
    check_confidence(confidence)
    if not 0.0 < alpha < 1.0 or not 0.0 < power < 1.0:
        raise ValueError("alpha and power must be in (0, 1)")
    classifier = rows.kind in CLASSIFIERS
    if not (min_effect > 0 and math.isfinite(min_effect)) or (classifier and min_effect >= 1):
        raise ValueError(f"min_effect must be positive (and below 1 for accuracy): {min_effect}")
    present, variant = np.unique(rows.variant.astype(np.str_), return_inverse=True)
    variant = variant.reshape(-1)
    names = sorted({str(name) for name in present} | ({control} if control else set()))
    metric = "accuracy" if classifier else "mae"
    if not names:
        return ABReport(rows.kind, metric, "", min_effect, confidence, alpha, (), (), 0)
    control_name = control or names[0]
    units = _unit_ids(rows)
    values = rows.correct.astype(np.float64) if classifier else rows.abs_error
    quality = rows.labelled & ~rows.error & np.isfinite(values)
    answered = ~rows.error & np.isfinite(rows.output_value)
    # Integer codes: comparing and sorting strings per variant would dominate the cost.
    codes = {str(name): code for code, name in enumerate(present)}
    masks = {name: variant == codes.get(name, -1) for name in names}
    label_codes = np.unique(rows.output_label.astype(np.str_), return_inverse=True)[1].reshape(-1)
    control_mask = masks[control_name]
    summaries = tuple(
        _summary(
            name,
            masks[name],
            control_mask,
            rows,
            units,
            label_codes,
            values,
            quality,
            answered,
            confidence,
        )
        for name in names
    )
    checkpoints = _checkpoints(rows.rows)
    comparisons = tuple(
        _compare(
            name,
            control_name,
            control_mask & quality,
            masks[name] & quality,
            values,
            units,
            checkpoints,
            classifier=classifier,
            min_effect=min_effect,
            confidence=confidence,
            alpha=alpha,
            power=power,
        )
        for name in names
        if name != control_name
    )
    pairs = np.unique(np.stack([units, variant]), axis=1)
    shared = int(np.count_nonzero(np.bincount(pairs[0]) > 1)) if pairs.size else 0
    return ABReport(
        kind=rows.kind,
        metric=metric,
        control=control_name,
        min_effect=min_effect,
        confidence=confidence,
        alpha=alpha,
        variants=summaries,
        comparisons=comparisons,
        units_in_several_variants=shared,
    )


def _unit_ids(rows: VariantColumns) -> IntArray:
    """An integer per row naming its unit: the entity key, else the request id."""
    keys = rows.entity_key.astype(np.str_)
    keyed = np.char.add("k:", keys)
    own = np.char.add("r:", rows.request_id.astype(np.str_))
    _, inverse = np.unique(np.where(keys != "", keyed, own), return_inverse=True)
    ids: IntArray = inverse.reshape(-1).astype(np.intp)
    return ids


def _summary(
    name: str,
    mine: BoolArray,
    control: BoolArray,
    rows: VariantColumns,
    units: IntArray,
    labels: IntArray,
    values: FloatArray,
    quality: BoolArray,
    answered: BoolArray,
    confidence: float,
) -> VariantSummary:
    requests = int(np.count_nonzero(mine))
    ok = mine & ~rows.error
    latency = rows.latency_ms[ok]
    latency = latency[np.isfinite(latency)]
    p50, p99 = (float(q) for q in np.quantile(latency, (0.5, 0.99))) if latency.size else NAN_PAIR
    outputs = rows.output_value[mine & answered]
    reference = rows.output_value[control & answered]
    rated = mine & quality
    return VariantSummary(
        variant=name,
        requests=requests,
        units=int(np.unique(units[mine]).size),
        error_rate=float(rows.error[mine].mean()) if requests else math.nan,
        latency_p50_ms=p50,
        latency_p99_ms=p99,
        output_mean=float(outputs.mean()) if outputs.size else math.nan,
        output_distance=(
            output_distance(reference, outputs) if outputs.size and reference.size else math.nan
        ),
        label_distance=(
            _label_distance(labels[control & ~rows.error], labels[ok])
            if rows.kind in CLASSIFIERS
            else math.nan
        ),
        labelled=int(np.count_nonzero(rated)),
        labelled_units=int(np.unique(units[rated]).size),
        quality=float(values[rated].mean()) if rated.any() else math.nan,
        quality_ci=_group_interval(values[rated], units[rated], rows.kind, confidence),
    )


def _label_distance(reference: IntArray, current: IntArray) -> float:
    """Jensen-Shannon distance of the predicted-label shares (labels as integer codes)."""
    if not reference.size or not current.size:
        return math.nan
    classes = int(max(reference.max(), current.max())) + 1
    return js_distance(
        np.bincount(reference, minlength=classes), np.bincount(current, minlength=classes), eps=0.0
    )


def _group_interval(
    values: FloatArray, units: IntArray, kind: str, confidence: float
) -> tuple[float, float]:
    """The cluster-robust interval of one group's mean: clustered_difference's per-group
    interval, with the group on both sides."""
    if np.unique(units).size < 2:
        return NAN_PAIR
    low, high = clustered_difference(values, units, values, units, confidence).ci_a
    if kind in CLASSIFIERS:
        return max(0.0, low), min(1.0, high)
    return low, high


def _checkpoints(rows: int) -> list[int]:
    """Row counts of the experiment at which the sequential test looks."""
    looks: list[int] = []
    position = float(FIRST_LOOK)
    while math.ceil(position) < rows:
        if not looks or math.ceil(position) > looks[-1]:
            looks.append(math.ceil(position))
        position *= LOOK_GROWTH
    if rows:
        looks.append(rows)
    return looks


def _compare(
    name: str,
    control: str,
    rated_a: BoolArray,
    rated_b: BoolArray,
    values: FloatArray,
    units: IntArray,
    checkpoints: Sequence[int],
    *,
    classifier: bool,
    min_effect: float,
    confidence: float,
    alpha: float,
    power: float,
) -> VariantComparison:
    y_a, y_b = values[rated_a], values[rated_b]
    u_a, u_b = units[rated_a], units[rated_b]
    test = SequentialTest(min_effect, alpha=alpha, higher_is_better=classifier)
    state, looks = _replay(test, rated_a, rated_b, values, units, checkpoints)
    ci_low, ci_high = state.ci_low, state.ci_high
    decision: Decision
    if state.decision == "b_better":
        decision = "b better"
    elif state.decision == "b_worse":
        decision = "b worse"
    elif -min_effect < ci_low and ci_high < min_effect:
        decision = "no difference"
    else:
        decision = "keep testing"
    sequential_difference = state.difference if looks else math.nan
    enough = np.unique(u_a).size >= 2 and np.unique(u_b).size >= 2
    clustered = clustered_difference(y_a, u_a, y_b, u_b, confidence) if enough else None
    if clustered is None:
        return VariantComparison(
            variant=name,
            control=control,
            difference=math.nan,
            ci=NAN_PAIR,
            z=math.nan,
            p_value=math.nan,
            naive_ci=NAN_PAIR,
            design_effect=math.nan,
            mean_unit_rows=math.nan,
            implied_icc=math.nan,
            sequential_difference=sequential_difference,
            sequential_p_value=state.p_value,
            sequential_ci=(ci_low, ci_high),
            sequential_looks=looks,
            required_per_variant=None,
            decision=decision,
        )
    per_row = clustered_difference(y_a, np.arange(y_a.size), y_b, np.arange(y_b.size), confidence)
    if classifier:
        naive: GroupDifference = proportion_difference(
            round(float(y_a.sum())), y_a.size, round(float(y_b.sum())), y_b.size, confidence
        )
    else:
        naive = per_row
    row_half = per_row.ci_high - per_row.estimate
    design_effect = (
        ((clustered.ci_high - clustered.estimate) / row_half) ** 2 if row_half > 0 else math.nan
    )
    unit_count = np.unique(u_a).size + np.unique(u_b).size
    mean_rows = (y_a.size + y_b.size) / unit_count
    icc = (design_effect - 1.0) / (mean_rows - 1.0) if mean_rows > 1 else math.nan
    return VariantComparison(
        variant=name,
        control=control,
        difference=clustered.estimate,
        ci=(clustered.ci_low, clustered.ci_high),
        z=clustered.z,
        p_value=clustered.p_value,
        naive_ci=(naive.ci_low, naive.ci_high),
        design_effect=design_effect,
        mean_unit_rows=mean_rows,
        implied_icc=icc,
        required_per_variant=_required(
            clustered.mean_a,
            np.concatenate([y_a, y_b]),
            design_effect,
            classifier=classifier,
            min_effect=min_effect,
            alpha=alpha,
            power=power,
        ),
        sequential_difference=sequential_difference,
        sequential_p_value=state.p_value,
        sequential_ci=(ci_low, ci_high),
        sequential_looks=looks,
        decision=decision,
    )


def _replay(
    test: SequentialTest,
    rated_a: BoolArray,
    rated_b: BoolArray,
    values: FloatArray,
    units: IntArray,
    checkpoints: Sequence[int],
) -> tuple[SequentialState, int]:
    """Feed the test the per-unit totals of both arms at every look; the final state and the
    number of looks that saw new rows."""
    positions = np.flatnonzero(rated_a | rated_b)
    in_b = rated_b[positions]
    # A unit seen in both arms is a separate unit in each.
    _, local = np.unique(units[positions] * 2 + in_b, return_inverse=True)
    local = local.reshape(-1)
    count = int(local.max()) + 1 if local.size else 0
    unit_in_b = np.zeros(count, dtype=np.bool_)
    unit_in_b[local] = in_b
    totals = np.zeros(count)
    sizes = np.zeros(count)
    y = values[positions]
    start = 0
    looks = 0
    for checkpoint in checkpoints:
        stop = int(np.searchsorted(positions, checkpoint))
        if stop == start:
            continue
        block = local[start:stop]
        totals += np.bincount(block, weights=y[start:stop], minlength=count)
        sizes += np.bincount(block, minlength=count)
        start = stop
        seen = sizes > 0
        means = totals[seen] / sizes[seen]
        arm_b = unit_in_b[seen]
        mean_a, mean_b = means[~arm_b], means[arm_b]
        test.update(
            int(mean_a.size),
            float(mean_a.sum()),
            float(np.dot(mean_a, mean_a)),
            int(mean_b.size),
            float(mean_b.sum()),
            float(np.dot(mean_b, mean_b)),
        )
        looks += 1
    return test.state, looks


def _required(
    control_mean: float,
    both: FloatArray,
    design_effect: float,
    *,
    classifier: bool,
    min_effect: float,
    alpha: float,
    power: float,
) -> int | None:
    if not math.isfinite(design_effect):
        return None
    inflation = max(1.0, design_effect)
    if classifier:
        for effect in (min_effect, -min_effect):
            if 0.0 < control_mean < 1.0 and 0.0 < control_mean + effect < 1.0:
                return required_sample_size(control_mean, effect, alpha, power, inflation)
        return None
    sd = float(both.std(ddof=1)) if both.size > 1 else math.nan
    if not sd > 0:
        return None
    return math.ceil(fixed_horizon_n(min_effect, sd, alpha, power) * inflation - 1e-9)
