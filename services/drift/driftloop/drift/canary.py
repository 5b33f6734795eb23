"""Canary analysis: a candidate's and the stable version's live traffic over the same
window, from the prediction log: error rate, latency, the distance between their output
distributions and, once labels arrive, quality (accuracy, or negative MAE). The gateway's
rollout controller asks for it at every round of every step, so the two comparisons that
decide on evidence (error rate and quality) are always-valid sequential tests, not
fixed-horizon ones: a z-test at alpha looked at after every batch fails a harmless
candidate far more often than alpha.

The rule. Each comparison is the mixture SPRT of `driftloop.stats.sequential` on
theta = candidate - stable, run over the window in the order the evidence arrived (a
request at its serving time, a labelled row when its label was published), at looks at
the end of every `look_s` seconds (coarsened by doubling to at most `max_looks` looks).
Each look's interval is the mixture's confidence sequence at alpha / 2 per comparison
(Bonferroni: together they fail a harmless candidate with probability at most alpha,
however often they are asked; up to the plug-in variances, see the caveats of
driftloop.stats.sequential), and a look counts only once both versions have the minimum
rows (`min_requests`; `min_labelled` for quality), where the plug-in variances mean
something.
- FAIL on errors as soon as, at some look, the interval for the error-rate increase lies
  wholly above `max_error_rate_increase`: the always-valid p-value of "the increase is
  exactly the tolerance" is below alpha / 2 with the estimate on the harmful side. By
  Ville's inequality a candidate whose increase is at most the tolerance is failed this
  way with probability at most alpha / 2 over the whole canary.
- FAIL on quality likewise when the interval for the quality difference lies wholly below
  -max_quality_drop (for regression the drop is relative to the stable MAE).
- EVIDENCE SUFFICIENT when nothing fails, both versions have `min_labelled` labelled rows,
  and the running confidence sequence of the quality difference (the intersection over
  the looks) lies above -max_quality_drop: the candidate is non-inferior, and a rollout may
  move on before its step's minimum duration. A candidate worse than the tolerance is
  called non-inferior with probability at most alpha / 2, at whatever look it is asked.
"Ever crossed at some look" survives a candidate that degrades late (more load at a
later step): the crossing is a property of that look, not of a running decision, so a
confidence sequence that first showed the candidate harmless does not shield it later.
Later calls find a crossing again as long as its look is still one of theirs: always
within the first max_looks x look_s seconds of a canary (512 s by default), and after
that for every other look per doubling. The gateway rolls back at the first FAIL it hears,
so what matters is that no call fails a harmless candidate, which the bound covers.

Why a replay: the drift service keeps no state between calls (any replica may answer,
and it may restart); it recomputes the whole path from the log, each call. The guarantee
covers the supremum over all prefixes of the sequence, so any set of looks is covered,
and the set a call uses need not match the gateway's rounds. What it needs is a sequence
that only grows at its end: labels arriving late are ordered by when they arrived, not by
when their prediction was served, for that reason. A request the log delivers late (a
gateway that buffered through a broker outage) lands inside the sequence instead; the
effect is small and only on looks already made.

Variances and scale. 0/1 values (errors; accuracy) use the Agresti-Caffo adjustment (one
success and one failure added to each version) so that no errors at all on both sides,
or a perfect record, still gives a finite interval. tau, the spread of effects the mixture
expects, is `error_rate_tau` and `quality_tau` (times the stable MAE for regression): a few
points of accuracy, the size of the differences between a model and its retrained
successor; effects far larger (a confidently wrong model) are caught within a few dozen
labelled rows all the same. Regression values are centred before summing (precision).
The regression tolerance uses the stable MAE of the whole window, a plug-in as well.

Measured (tests/unit/test_canary_sequential.py, asked at every one of 12 rounds, no
difference and no tolerance, alpha 0.05): 1 of 300 harmless canaries failed, where the
one-sided z-test it replaced failed 44; at 30 rounds, 9 of 2,000 against 426. The price is
power: a 5% error rate against none is failed after about 900 candidate requests (median),
and an equal candidate needs about 12,000 labelled rows a side for sufficient evidence at a
2-point tolerance; a better one (+5 points) far fewer, about 900.

The output distance is the label-free stand-in for quality: it fails a candidate only
while too few labelled rows exist to compare quality itself. Once both sides have enough
labels, quality decides: a retrained model that answers differently because the world
changed, and is right more often, is not held back by how different it is. Latency and
distance are point checks, not sequential ones.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from driftloop.clickhouse.client import ClickHouse
from driftloop.clickhouse.prediction_log import Traffic, labelled_window_query
from driftloop.drift.outcomes import CLASSIFIERS, errors
from driftloop.stats import output_distance
from driftloop.stats.sequential import SequentialTest

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


def _empty() -> FloatArray:
    return np.zeros(0)


@dataclass(frozen=True)
class CanaryLimits:
    min_requests: int = 50
    min_labelled: int = 50
    max_error_rate_increase: float = 0.02
    max_p99_latency_ratio: float = 2.0
    latency_slack_ms: float = 10.0
    max_output_distance: float = 0.3
    # Accuracy (classifiers) or relative MAE (regression) the candidate may lose.
    max_quality_drop: float = 0.02
    # The canary's false-FAIL budget; each sequential comparison gets half.
    alpha: float = 0.01
    # The mixtures' spread of expected effects (see the module docstring).
    error_rate_tau: float = 0.02
    quality_tau: float = 0.05
    # Looks at the end of every look_s seconds of the window, at most max_looks of them.
    look_s: float = 1.0
    max_looks: int = 512


@dataclass(frozen=True)
class VariantStats:
    version: str
    requests: int = 0
    errors: int = 0
    p50_latency_ms: float = 0.0
    p99_latency_ms: float = 0.0
    labelled: int = 0
    # Accuracy for classifiers, negative MAE for regression; NaN without labels.
    accuracy: float = math.nan
    quality_var: float = math.nan

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class VersionTraffic:
    """One version's live traffic in the window: every request (serving time in seconds
    since the epoch, failed or not, latency), the outputs of the answered ones, and for the
    answered ones that have their label, when the label arrived and the row's quality
    (1 - error for classifiers, -|error| for regression)."""

    version: str
    times: FloatArray = field(default_factory=_empty)
    failed: BoolArray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    latency_ms: FloatArray = field(default_factory=_empty)
    outputs: FloatArray = field(default_factory=_empty)
    label_times: FloatArray = field(default_factory=_empty)
    quality: FloatArray = field(default_factory=_empty)
    classifier: bool = True

    def stats(self) -> VariantStats:
        requests = int(self.times.size)
        if requests == 0:
            return VariantStats(self.version)
        labelled = int(self.quality.size)
        p50, p99 = np.quantile(self.latency_ms, [0.5, 0.99]).tolist()
        return VariantStats(
            version=self.version,
            requests=requests,
            errors=int(self.failed.sum()),
            p50_latency_ms=p50,
            p99_latency_ms=p99,
            labelled=labelled,
            accuracy=float(self.quality.mean()) if labelled else math.nan,
            quality_var=float(self.quality.var()) if labelled else math.nan,
        )


@dataclass(frozen=True)
class Sequential:
    """One comparison replayed: the running confidence sequence for candidate - stable
    after the last look, and the first look (if any) whose interval lay wholly on the
    harmful side of the tolerance."""

    low: float = -math.inf
    high: float = math.inf
    looks: int = 0
    harm: tuple[float, float] | None = None
    harm_rows: int = 0


@dataclass(frozen=True)
class CanaryResult:
    stable: VariantStats
    candidate: VariantStats
    output_distance: float
    verdict: str  # "inconclusive", "pass" or "fail"
    reasons: list[str]
    evidence_sufficient: bool = False
    # The always-valid interval for (candidate - stable) quality; NaN before enough labels.
    quality_difference: tuple[float, float] = (math.nan, math.nan)
    error_rate_difference: tuple[float, float] = (math.nan, math.nan)


def replay(
    stable_times: FloatArray,
    stable_values: FloatArray,
    candidate_times: FloatArray,
    candidate_values: FloatArray,
    *,
    bound: float,
    higher_is_harm: bool,
    tau: float,
    alpha: float,
    min_rows: int,
    binary: bool,
    look_s: float = 1.0,
    max_looks: int = 512,
) -> Sequential:
    """The mixture SPRT of candidate - stable over the values in arrival order, fed the
    cumulative totals at each look. `bound` is the edge of harm: the candidate is harmful
    when the difference is above it (`higher_is_harm`) or below it."""
    a_order = np.argsort(stable_times, kind="stable")
    b_order = np.argsort(candidate_times, kind="stable")
    a_times, b_times = stable_times[a_order], candidate_times[b_order]
    a_values, b_values = stable_values[a_order], candidate_values[b_order]
    pooled = np.concatenate([a_values, b_values])
    centre = 0.0 if binary or pooled.size == 0 else float(pooled.mean())
    a_sum, a_sumsq = _cumulative(a_values - centre)
    b_sum, b_sumsq = _cumulative(b_values - centre)
    ends = _look_ends(np.concatenate([a_times, b_times]), look_s, max_looks)
    a_counts = np.searchsorted(a_times, ends, side="left")
    b_counts = np.searchsorted(b_times, ends, side="left")
    a_counts[-1], b_counts[-1] = a_times.size, b_times.size  # the last look sees everything
    # Agresti-Caffo: one success and one failure more on each side.
    extra_n, extra_sum = (2, 1.0) if binary else (0, 0.0)
    test = SequentialTest(tau, alpha=alpha, tau=tau)
    looks, harm, harm_rows = 0, None, 0
    for n_a, n_b in zip(a_counts.tolist(), b_counts.tolist(), strict=True):
        if n_a < min_rows or n_b < min_rows:
            continue
        state = test.update(
            n_a + extra_n,
            float(a_sum[n_a]) + extra_sum,
            float(a_sumsq[n_a]) + extra_sum,
            n_b + extra_n,
            float(b_sum[n_b]) + extra_sum,
            float(b_sumsq[n_b]) + extra_sum,
        )
        looks += 1
        crossed = state.ci_low > bound if higher_is_harm else state.ci_high < bound
        if harm is None and crossed:
            harm, harm_rows = (state.ci_low, state.ci_high), n_b
    if looks == 0:
        return Sequential()
    state = test.state
    return Sequential(state.ci_low, state.ci_high, looks, harm, harm_rows)


def _cumulative(values: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Prefix sums with a leading 0: totals of the first n values at index n."""
    zero = np.zeros(1)
    return np.concatenate([zero, np.cumsum(values)]), np.concatenate(
        [zero, np.cumsum(values * values)]
    )


def _look_ends(times: FloatArray, look_s: float, max_looks: int) -> FloatArray:
    """The ends of the look_s buckets that hold arrivals, the bucket doubled until there
    are at most max_looks of them (doubling keeps the earlier ends: nested grids)."""
    if times.size == 0:
        return np.zeros(1)
    width = look_s
    while True:
        buckets = np.unique(np.floor(times / width))
        if buckets.size <= max_looks:
            return np.asarray((buckets + 1.0) * width, dtype=np.float64)
        width *= 2.0


class CanaryAnalysis:
    def __init__(self, clickhouse: ClickHouse, limits: CanaryLimits) -> None:
        self._ch = clickhouse
        self._limits = limits

    @property
    def limits(self) -> CanaryLimits:
        return self._limits

    async def analyse(
        self,
        model: str,
        stable: str,
        candidate: str,
        start: dt.datetime,
        end: dt.datetime,
        limits: CanaryLimits | None = None,
    ) -> CanaryResult:
        sql, params = labelled_window_query(
            self._ch,
            Traffic(model, (stable, candidate), start, end, failures=True),
            [
                "version",
                "toString(output_kind) AS kind",
                "output_value",
                "output_label",
                "latency_us",
                "error != '' AS failed",
            ],
        )
        columns = await self._ch.query_columns(sql, params)
        return judge(
            _traffic(stable, columns), _traffic(candidate, columns), limits or self._limits
        )


def _traffic(version: str, columns: dict[str, npt.NDArray[Any]]) -> VersionTraffic:
    mine = columns["version"] == version
    if not mine.any():
        return VersionTraffic(version)
    failed = columns["failed"][mine].astype(bool)
    ok = ~failed
    labelled = columns["labelled"][mine].astype(bool) & ok
    kind = str(columns["kind"][mine][0])
    quality, label_times = _empty(), _empty()
    if labelled.any():
        pick = {name: columns[name][mine][labelled] for name in columns}
        err = errors(
            kind,
            pick["output_label"].astype(object),
            pick["output_value"].astype(np.float64),
            pick["truth_label"].astype(object),
            pick["truth_value"].astype(np.float64),
            pick["truth_is_label"].astype(bool),
        )
        finite = np.isfinite(err)
        quality = 1.0 - err[finite] if kind in CLASSIFIERS else -err[finite]
        # A row is known once both it and its label are in: the later of the two times.
        known = np.maximum(pick["time_us"], pick["label_time_us"]).astype(np.float64) / 1e6
        label_times = known[finite]
    return VersionTraffic(
        version=version,
        times=np.asarray(columns["time_us"][mine], dtype=np.float64) / 1e6,
        failed=failed,
        latency_ms=np.asarray(columns["latency_us"][mine], dtype=np.float64) / 1000.0,
        outputs=np.asarray(columns["output_value"][mine][ok], dtype=np.float64),
        label_times=label_times,
        quality=np.asarray(quality, dtype=np.float64),
        classifier=kind in CLASSIFIERS,
    )


def judge(stable: VersionTraffic, candidate: VersionTraffic, limits: CanaryLimits) -> CanaryResult:
    """The verdict on a candidate by the rule of the module docstring."""
    s, c = stable.stats(), candidate.stats()
    distance = output_distance(stable.outputs, candidate.outputs)
    if c.requests < limits.min_requests or s.requests < limits.min_requests:
        return CanaryResult(s, c, distance, "inconclusive", ["not enough traffic"])
    reasons = []
    confidence = f"{1.0 - limits.alpha / 2:.1%}"
    tolerance = limits.max_error_rate_increase
    failures = replay(
        stable.times,
        stable.failed.astype(np.float64),
        candidate.times,
        candidate.failed.astype(np.float64),
        bound=tolerance,
        higher_is_harm=True,
        tau=limits.error_rate_tau,
        alpha=limits.alpha / 2,
        min_rows=limits.min_requests,
        binary=True,
        look_s=limits.look_s,
        max_looks=limits.max_looks,
    )
    if failures.harm is not None:
        low, high = failures.harm
        reasons.append(
            f"error rate {c.error_rate:.1%} vs stable {s.error_rate:.1%}: higher by more than "
            f"the allowed {tolerance:.1%} (always-valid {confidence} interval of the increase "
            f"[{low:.1%}, {high:.1%}] after {failures.harm_rows} candidate requests)"
        )
    ratio = limits.max_p99_latency_ratio
    if c.p99_latency_ms > ratio * s.p99_latency_ms + limits.latency_slack_ms and (
        c.p50_latency_ms > ratio * s.p50_latency_ms + limits.latency_slack_ms / 2
    ):
        reasons.append(f"p99 latency {c.p99_latency_ms:.1f} ms vs stable {s.p99_latency_ms:.1f}")
    labelled = min(s.labelled, c.labelled) >= limits.min_labelled
    if distance > limits.max_output_distance and not labelled:
        reasons.append(f"output distance {distance:.3f} (allowed {limits.max_output_distance:g})")
    quality_difference = (math.nan, math.nan)
    evidence = False
    if labelled:
        # Regression: the drop and the mixture's spread are relative to the stable MAE.
        scale = 1.0 if stable.classifier else max(abs(s.accuracy), 1e-12)
        drop = limits.max_quality_drop * scale
        quality = replay(
            stable.label_times,
            stable.quality,
            candidate.label_times,
            candidate.quality,
            bound=-drop,
            higher_is_harm=False,
            tau=limits.quality_tau * scale,
            alpha=limits.alpha / 2,
            min_rows=limits.min_labelled,
            binary=stable.classifier,
            look_s=limits.look_s,
            max_looks=limits.max_looks,
        )
        quality_difference = (quality.low, quality.high)
        if quality.harm is not None:
            low, high = quality.harm
            reasons.append(
                f"quality {c.accuracy:.4f} vs stable {s.accuracy:.4f} on "
                f"{c.labelled}/{s.labelled} labelled rows: lower by more than the allowed "
                f"{drop:.4g} (always-valid {confidence} interval of the difference "
                f"[{low:.4f}, {high:.4f}] after {quality.harm_rows} labelled candidate rows)"
            )
        evidence = not reasons and quality.looks > 0 and quality.low > -drop
    return CanaryResult(
        s,
        c,
        distance,
        "fail" if reasons else "pass",
        reasons,
        evidence_sufficient=evidence,
        quality_difference=quality_difference,
        error_rate_difference=(failures.low, failures.high),
    )
