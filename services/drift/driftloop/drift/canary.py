"""Canary analysis: a candidate's and the stable version's live traffic over the same
window, from the prediction log: error rate, latency, the distance between their output
distributions and, once labels arrive, accuracy (or MAE). The gateway's rollout controller
asks for it at every step; a significant quality drop fails the canary.

The output distance is the label-free stand-in for quality: it fails a candidate only
while too few labelled rows exist to compare quality itself. Once both sides have enough
labels, quality decides: a retrained model that answers differently because the world
changed, and is right more often, is not held back by how different it is."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from driftloop.clickhouse.client import ClickHouse
from driftloop.drift.outcomes import CLASSIFIERS, errors
from driftloop.stats import output_distance

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class CanaryLimits:
    min_requests: int = 50
    min_labelled: int = 50
    max_error_rate_increase: float = 0.02
    max_p99_latency_ratio: float = 2.0
    latency_slack_ms: float = 10.0
    max_output_distance: float = 0.3
    # Accuracy (classifiers) or relative MAE (regression) the candidate may lose, when the
    # loss is also significant at `alpha` (two-sample z-test).
    max_quality_drop: float = 0.02
    alpha: float = 0.01


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
    outputs: FloatArray = field(default_factory=lambda: np.zeros(0))

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class CanaryResult:
    stable: VariantStats
    candidate: VariantStats
    output_distance: float
    verdict: str  # "inconclusive", "pass" or "fail"
    reasons: list[str]


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
        columns = await self._ch.query_columns(
            "WITH p AS (SELECT request_id, version, output_kind, output_value, output_label, "
            f"latency_us, error FROM {self._ch.table('predictions')} FINAL "
            "WHERE model = {model:String} AND role = 'live' "
            "AND version IN ({stable:String}, {candidate:String}) "
            "AND time >= {start:DateTime64(6, 'UTC')} AND time < {end:DateTime64(6, 'UTC')}) "
            "SELECT p.version AS version, toString(p.output_kind) AS kind, "
            "p.output_value AS value, p.output_label AS label, "
            "toFloat64(p.latency_us) AS latency_us, p.error != '' AS failed, "
            "l.request_id != '' AS labelled, l.label AS truth_label, "
            "l.value AS truth_value, l.truth_kind = 'label' AS truth_is_label "
            f"FROM p LEFT JOIN (SELECT request_id, label, value, truth_kind FROM "
            f"{self._ch.table('labels')} FINAL WHERE request_id IN (SELECT request_id FROM p)) "
            "AS l ON p.request_id = l.request_id",
            {"model": model, "stable": stable, "candidate": candidate, "start": start, "end": end},
        )
        return judge(
            _variant(stable, columns), _variant(candidate, columns), limits or self._limits
        )


def _variant(version: str, columns: dict[str, npt.NDArray[Any]]) -> VariantStats:
    mine = columns["version"] == version
    if not mine.any():
        return VariantStats(version)
    failed = columns["failed"][mine].astype(bool)
    latencies = columns["latency_us"][mine] / 1000.0
    ok = ~failed
    labelled = columns["labelled"][mine].astype(bool) & ok
    kind = str(columns["kind"][mine][0])
    quality, variance = math.nan, math.nan
    if labelled.any():
        pick = {name: columns[name][mine][labelled] for name in columns}
        err = errors(
            kind,
            pick["label"].astype(object),
            pick["value"].astype(np.float64),
            pick["truth_label"].astype(object),
            pick["truth_value"].astype(np.float64),
            pick["truth_is_label"].astype(bool),
        )
        err = err[np.isfinite(err)]
        if err.size:
            quality = float(1.0 - err.mean()) if kind in CLASSIFIERS else -float(err.mean())
            variance = float(err.var())
    return VariantStats(
        version=version,
        requests=int(mine.sum()),
        errors=int(failed.sum()),
        p50_latency_ms=float(np.quantile(latencies, 0.5)),
        p99_latency_ms=float(np.quantile(latencies, 0.99)),
        labelled=int(labelled.sum()),
        accuracy=quality,
        quality_var=variance,
        outputs=np.asarray(columns["value"][mine][ok], dtype=np.float64),
    )


def judge(stable: VariantStats, candidate: VariantStats, limits: CanaryLimits) -> CanaryResult:
    distance = output_distance(stable.outputs, candidate.outputs)
    if candidate.requests < limits.min_requests or stable.requests < limits.min_requests:
        return CanaryResult(stable, candidate, distance, "inconclusive", ["not enough traffic"])
    reasons = []
    increase = candidate.error_rate - stable.error_rate
    if increase > limits.max_error_rate_increase and candidate.errors >= 3:
        reasons.append(f"error rate {candidate.error_rate:.1%} vs stable {stable.error_rate:.1%}")
    ratio = limits.max_p99_latency_ratio
    if candidate.p99_latency_ms > ratio * stable.p99_latency_ms + limits.latency_slack_ms and (
        candidate.p50_latency_ms > ratio * stable.p50_latency_ms + limits.latency_slack_ms / 2
    ):
        reasons.append(
            f"p99 latency {candidate.p99_latency_ms:.1f} ms vs stable {stable.p99_latency_ms:.1f}"
        )
    labelled = min(stable.labelled, candidate.labelled) >= limits.min_labelled
    if distance > limits.max_output_distance and not labelled:
        reasons.append(f"output distance {distance:.3f} (allowed {limits.max_output_distance:g})")
    if labelled:
        drop = stable.accuracy - candidate.accuracy
        # Regression: the drop is relative to the stable MAE.
        allowed = limits.max_quality_drop * (abs(stable.accuracy) if stable.accuracy < 0 else 1)
        spread = math.sqrt(
            stable.quality_var / stable.labelled + candidate.quality_var / candidate.labelled
        )
        p_value = 0.5 * math.erfc(drop / max(spread, 1e-12) / math.sqrt(2.0))
        if drop > allowed and p_value < limits.alpha:
            reasons.append(
                f"quality {candidate.accuracy:.4f} vs stable {stable.accuracy:.4f} on "
                f"{candidate.labelled}/{stable.labelled} labelled rows (p={p_value:.2g})"
            )
    return CanaryResult(stable, candidate, distance, "fail" if reasons else "pass", reasons)
