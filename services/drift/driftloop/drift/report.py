"""The drift report of one window against a version's frozen baseline (pure: no I/O).

Per feature: PSI, Jensen-Shannon and KL on the frozen bins, an effect size (the KS
distance D against the reference sample for numbers, the total variation distance for
categories: both the share of the population that moved) and a test of whether the change
is more than negligible (KS for numbers, chi-squared for categories, each against the
hypothesis "distance <= `negligible`", driftloop.stats.effect), so that a huge window does
not make a negligible difference significant.

The rule: a feature drifts when its change is both significant (its test, after
Benjamini-Hochberg across the features at `fdr_alpha`) and material (PSI >= `psi_threshold`,
or effect size >= `effect_threshold`). PSI alone misses slow drift: a normal feature whose
mean moved by 0.25 sigma has PSI ~0.06 on decile bins but D ~0.1, over the default 0.08
(the D of a 0.2-sigma shift). The output gets the same treatment (prediction drift, no
labels needed). Concept drift compares the labelled rows' performance with the holdout's.
Root causes rank features by how much error their shift explains when labels exist, else
by PSI.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from driftloop.drift.outcomes import CLASSIFIERS, errors
from driftloop.drift.windows import StreamCounts, WindowData, WindowStats, summarize
from driftloop.models.baseline import Baseline, CategoricalBaseline, NumericBaseline
from driftloop.stats import (
    benjamini_hochberg,
    bin_index,
    chi2_margin_test,
    js_distance,
    kl,
    ks_from_counts,
    ks_margin_p_value,
    psi,
    total_variation,
)

FloatArray = npt.NDArray[np.float64]
OUTPUT = "__output__"
# A test needs at least this many values in the window to say anything.
MIN_VALUES = 30


@dataclass(frozen=True)
class Thresholds:
    fdr_alpha: float = 0.01
    psi_threshold: float = 0.1
    psi_major: float = 0.2
    effect_threshold: float = 0.08
    negligible: float = 0.02
    dataset_drift_share: float = 0.5
    concept_tolerance: float = 0.05
    concept_min_labelled: int = 200


@dataclass(frozen=True)
class Score:
    """One test on one stream (a feature or the output)."""

    stream: str
    test: str
    value: float
    p_value: float = float("nan")
    drifted: bool = False


@dataclass(frozen=True)
class StreamResult:
    """All tests of one stream; `psi` and `effect` decide with `p_value` (the test's p-value
    of "the change is negligible", after BH for features)."""

    stream: str
    psi: float
    js: float
    kl: float
    test: str
    statistic: float
    p_value: float
    drifted: bool = False
    # KS D (numbers; the same as `statistic`) or total variation distance (categories).
    effect: float = 0.0
    # What made the change material, when it is: "psi", or the effect size ("ks", "tvd").
    material_by: str = ""
    # Window shares on the frozen bins and their baseline shares (for root causes).
    shares: FloatArray = field(default_factory=lambda: np.zeros(0))
    reference: FloatArray = field(default_factory=lambda: np.zeros(0))

    @property
    def effect_test(self) -> str:
        """The effect size's name among the scores: "ks" (D) or "tvd"."""
        return "ks" if self.test == "ks" else "tvd"

    @property
    def evidence(self) -> tuple[str, float]:
        """The score that shows the drift: the one that made it material (PSI first)."""
        if self.material_by and self.material_by != "psi":
            return self.material_by, self.effect
        return "psi", self.psi

    def scores(self) -> list[Score]:
        return [
            Score(self.stream, "psi", self.psi, self.p_value, self.drifted),
            Score(self.stream, "js", self.js, self.p_value, self.drifted),
            Score(self.stream, "kl", self.kl, self.p_value, self.drifted),
            Score(self.stream, self.test, self.statistic, self.p_value, self.drifted),
            *(
                [Score(self.stream, "tvd", self.effect, self.p_value, self.drifted)]
                if self.effect_test == "tvd"
                else []
            ),
        ]


@dataclass(frozen=True)
class RootCause:
    feature: str
    drift: float
    performance_link: float


@dataclass(frozen=True)
class Report:
    model: str
    version: str
    window_kind: str
    start: dt.datetime
    end: dt.datetime
    rows: int
    labelled: int
    features: list[StreamResult]
    prediction: StreamResult | None
    performance: dict[str, float]
    data_drift: bool
    prediction_drift: bool
    concept_drift: bool
    drifted_share: float
    root_causes: list[RootCause]
    # Worth a critical alert: dataset drift, or a drifted feature with a major PSI.
    major: bool = False
    # Registered without reference data: nothing to compare the window with.
    baseline_missing: bool = False

    @property
    def drifted_features(self) -> list[StreamResult]:
        """The drifted features, largest PSI first."""
        return sorted((f for f in self.features if f.drifted), key=lambda f: -f.psi)


def build_report(
    model: str,
    version: str,
    window_kind: str,
    output_kind: str,
    baseline: Baseline,
    data: WindowData,
    thresholds: Thresholds,
) -> Report:
    """The report of a window's columns in memory (see `report_of_stats`)."""
    return report_of_stats(
        model, version, window_kind, output_kind, baseline, summarize(baseline, data), thresholds
    )


def report_of_stats(
    model: str,
    version: str,
    window_kind: str,
    output_kind: str,
    baseline: Baseline,
    data: WindowStats,
    thresholds: Thresholds,
) -> Report:
    """The report of a window's counts against the baseline: its cost grows with the
    features, bins, reference sample and labelled rows, not with the window's rows."""
    negligible = thresholds.negligible
    numeric = [
        _numeric(item, data.numbers[item.feature], negligible)
        for item in baseline.numeric
        if item.feature in data.numbers and item.sample
    ]
    categorical = [
        _categorical(item, data.categories[item.feature], negligible)
        for item in baseline.categorical
        if item.feature in data.categories
    ]
    features = _control_fdr([r for r in [*numeric, *categorical] if r is not None], thresholds)
    prediction = None
    if baseline.output is not None and baseline.output.sample and data.output is not None:
        result = _numeric(baseline.output, data.output, negligible, OUTPUT)
        if result is not None:
            reject = result.p_value < thresholds.fdr_alpha
            prediction = _with_decision(result, result.p_value, reject, thresholds)
    drifted_share = sum(f.drifted for f in features) / len(features) if features else 0.0
    errors_ = _labelled_errors(output_kind, data)
    performance, concept = _performance(output_kind, baseline, errors_, thresholds)
    return Report(
        model=model,
        version=version,
        window_kind=window_kind,
        start=data.start,
        end=data.end,
        rows=data.rows,
        labelled=int(errors_.size),
        features=features,
        prediction=prediction,
        performance=performance,
        data_drift=any(f.drifted for f in features),
        prediction_drift=prediction is not None and prediction.drifted,
        concept_drift=concept,
        drifted_share=drifted_share,
        root_causes=_root_causes(baseline, data, features, errors_, concept),
        major=drifted_share >= thresholds.dataset_drift_share
        or any(f.drifted and f.psi >= thresholds.psi_major for f in features),
        baseline_missing=not (baseline.numeric or baseline.categorical or baseline.output),
    )


def materiality(result: StreamResult, thresholds: Thresholds) -> str:
    """What makes a change matter, whatever its significance: "psi" when its PSI reaches
    the threshold, else its effect size's name when that does, else "". Either suffices:
    PSI weighs the tails and a change of shape, the effect size (a share of the
    population) sees a small shift of the bulk."""
    if result.psi >= thresholds.psi_threshold:
        return "psi"
    if result.effect >= thresholds.effect_threshold:
        return result.effect_test
    return ""


def _numeric(
    item: NumericBaseline, window: StreamCounts, negligible: float, stream: str | None = None
) -> StreamResult | None:
    if window.size < MIN_VALUES:
        return None
    counts = window.bins
    reference = np.asarray(item.frequencies, dtype=np.float64)
    sample = np.asarray(item.sample, dtype=np.float64)
    # Exact, ties included: the same D as driftloop.stats.ks_statistic on the values.
    d = ks_from_counts(sample, window.below, window.at_or_below, window.size)
    return StreamResult(
        stream=stream or item.feature,
        psi=psi(reference, counts),
        js=js_distance(reference, counts),
        kl=kl(counts, reference),
        test="ks",
        statistic=d,
        p_value=ks_margin_p_value(d, window.size, len(item.sample), negligible),
        shares=counts / counts.sum(),
        reference=reference,
        effect=d,
    )


def _categorical(
    item: CategoricalBaseline, counts: npt.NDArray[np.int64], negligible: float
) -> StreamResult | None:
    if counts.sum() < MIN_VALUES:
        return None
    # The unseen bucket had no reference mass; smoothing keeps it finite.
    reference = np.asarray([*item.frequencies, 0.0], dtype=np.float64)
    result = chi2_margin_test(reference, counts, negligible)
    return StreamResult(
        stream=item.feature,
        psi=psi(reference, counts),
        js=js_distance(reference, counts),
        kl=kl(counts, reference),
        test="chi2",
        statistic=result.statistic,
        p_value=result.p_value,
        shares=counts / counts.sum(),
        reference=reference,
        effect=total_variation(reference, counts),
    )


def _control_fdr(results: list[StreamResult], thresholds: Thresholds) -> list[StreamResult]:
    """Benjamini-Hochberg across the features; the adjusted p-value is reported. A feature
    drifts when it is rejected and its change is material."""
    if not results:
        return []
    rejected, adjusted = benjamini_hochberg(
        np.asarray([r.p_value for r in results]), thresholds.fdr_alpha
    )
    return [
        _with_decision(r, float(p), bool(reject), thresholds)
        for r, reject, p in zip(results, rejected, adjusted, strict=True)
    ]


def _with_decision(
    result: StreamResult, p_value: float, significant: bool, thresholds: Thresholds
) -> StreamResult:
    """The result with its decision: drifted when significant and material."""
    material_by = materiality(result, thresholds)
    return dataclasses.replace(
        result,
        p_value=p_value,
        drifted=significant and bool(material_by),
        material_by=material_by if significant else "",
    )


def _labelled_errors(output_kind: str, data: WindowStats) -> FloatArray:
    rows = data.labelled
    return errors(
        output_kind,
        rows.output_label,
        rows.output_value,
        rows.truth_label,
        rows.truth_value,
        rows.truth_is_label,
    )


def _performance(
    output_kind: str, baseline: Baseline, errors_: FloatArray, thresholds: Thresholds
) -> tuple[dict[str, float], bool]:
    """Window performance against the holdout's, and whether it is concept drift: worse by
    more than the tolerance, and significantly worse (one-sided z-test)."""
    errors_ = errors_[np.isfinite(errors_)]
    n = errors_.size
    if n == 0:
        return {}, False
    if output_kind in CLASSIFIERS:
        accuracy = float(1.0 - errors_.mean())
        holdout = baseline.holdout_metrics.get("accuracy", float("nan"))
        performance = {"accuracy": accuracy, "holdout_accuracy": holdout}
        if math.isnan(holdout):
            return performance, False
        drop = holdout - accuracy
        spread = math.sqrt(max(holdout * (1.0 - holdout), 1e-12) / n)
        worse_by = drop - thresholds.concept_tolerance
    else:
        mae = float(errors_.mean())
        holdout = baseline.holdout_metrics.get("mae", float("nan"))
        performance = {"mae": mae, "holdout_mae": holdout}
        if math.isnan(holdout):
            return performance, False
        drop = mae - holdout
        spread = max(float(errors_.std()), 1e-12) / math.sqrt(n)
        worse_by = mae - holdout * (1.0 + thresholds.concept_tolerance)
    p_value = 0.5 * math.erfc(drop / spread / math.sqrt(2.0))
    performance["performance_p_value"] = p_value
    concept = (
        n >= thresholds.concept_min_labelled and worse_by > 0 and p_value < (thresholds.fdr_alpha)
    )
    return performance, concept


def _root_causes(
    baseline: Baseline,
    data: WindowStats,
    features: list[StreamResult],
    errors_: FloatArray,
    performance_dropped: bool,
) -> list[RootCause]:
    """Each feature's drift and, with labels, the error its shift explains: the sum over
    its bins of (window share - baseline share) x (the bin's error rate in the window).
    Ranked by that link when performance dropped, else by drift."""
    labelled = data.labelled
    finite = np.isfinite(errors_)
    edges = {item.feature: item.edges for item in baseline.numeric}
    categories = {item.feature: item.categories for item in baseline.categorical}
    causes = []
    for result in features:
        link = float("nan")
        if finite.any():
            if result.stream in edges:
                values = labelled.numbers[result.stream]
                bins = bin_index(values, edges[result.stream])
            else:
                names = categories[result.stream]
                index = {name: i for i, name in enumerate(names)}
                column = labelled.categories[result.stream]
                bins = np.asarray([index.get(v, len(names)) for v in column], dtype=np.intp)
            link = _link(result, bins[finite], errors_[finite])
        causes.append(RootCause(result.stream, result.psi, link))
    if performance_dropped:
        return sorted(causes, key=lambda c: (-c.performance_link, -c.drift, c.feature))
    return sorted(causes, key=lambda c: (-c.drift, c.feature))


def _link(result: StreamResult, bins: npt.NDArray[np.intp], errors_: FloatArray) -> float:
    keep = bins >= 0
    bins, errors_ = bins[keep], errors_[keep]
    if errors_.size == 0:
        return float("nan")
    size = result.shares.size
    totals = np.bincount(bins, weights=errors_, minlength=size)[:size]
    counts = np.bincount(bins, minlength=size)[:size]
    rates = np.where(counts > 0, totals / np.maximum(counts, 1), errors_.mean())
    return float(np.sum((result.shares - result.reference) * rates))
