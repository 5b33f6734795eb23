"""Canary analysis: candidate against stable over the same window, and the step decision.

The gateway analyses the traffic it served itself: error rate, p50/p99 latency and the
Jensen-Shannon distance between the two output distributions (`TrafficAnalysis`). When a
drift service is configured, its canary analysis over the logged traffic of every replica
is a second opinion (`QualityCheck`): always-valid sequential tests of the error rate and
of quality on labelled rows (services/drift/.../canary.py), safe to ask at every round.
Its failure fails the step; its "evidence sufficient" (the candidate's quality is
non-inferior with confidence) lets a step that has its minimum requests move on before its
minimum duration; and its count of the candidate's labelled rows is what
`min_labelled_before_promotion` waits for. Without a drift service there is no labelled
quality check at all, and the rollout says so in its events.
"""

from __future__ import annotations

import collections
import datetime as dt
import enum
import math
import time
from dataclasses import dataclass
from typing import Protocol

from driftloop.stats import output_distance
from driftloop.v1 import events_pb2

MAX_SAMPLES = 100_000
# p99 of small samples is noisy: compare only with this many candidate requests, and
# allow this much on top of the ratio (a real regression is far larger).
LATENCY_MIN_REQUESTS = 200
LATENCY_SLACK_MS = 10.0


class Verdict(enum.Enum):
    WAIT = "wait"
    PASS = "pass"
    FAIL = "fail"


@dataclass(frozen=True)
class VersionStats:
    requests: int
    errors: int
    p99_ms: float
    outputs: tuple[float, ...]
    p50_ms: float = 0.0

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class Analysis:
    verdict: Verdict
    reasons: tuple[str, ...]
    stable: VersionStats
    candidate: VersionStats
    output_distance: float


class TrafficAnalysis(Protocol):
    def stats(self, model: str, version: str, since: float) -> VersionStats: ...


@dataclass(frozen=True)
class QualityOpinion:
    """The drift service's view of a canary: the reasons it fails (none: it does not),
    whether the labelled evidence suffices to pass early, and the labelled rows it counts.
    `available` is False when it could not be asked (then nothing else is known)."""

    failures: tuple[str, ...] = ()
    evidence_sufficient: bool = False
    candidate_labelled: int = 0
    stable_labelled: int = 0
    quality_difference_low: float = math.nan
    available: bool = True


class QualityCheck(Protocol):
    """A second opinion on a canary from the logged traffic since the canary started (the
    drift service's AnalyzeCanary, with quality once labels arrive)."""

    async def opinion(
        self,
        model: str,
        stable: str,
        candidate: str,
        since: dt.datetime,
        plan: events_pb2.CanaryPlan,
    ) -> QualityOpinion: ...


class TrafficRecorder:
    """What this gateway served, per model version: (time, ok, latency, output value)."""

    def __init__(self) -> None:
        self._samples: dict[
            tuple[str, str], collections.deque[tuple[float, bool, float, float]]
        ] = {}

    def record(self, model: str, version: str, ok: bool, latency_ms: float, output: float) -> None:
        samples = self._samples.get((model, version))
        if samples is None:
            samples = self._samples[(model, version)] = collections.deque(maxlen=MAX_SAMPLES)
        samples.append((time.monotonic(), ok, latency_ms, output))

    def stats(self, model: str, version: str, since: float) -> VersionStats:
        rows = [s for s in self._samples.get((model, version), ()) if s[0] >= since]
        latencies = sorted(s[2] for s in rows)
        return VersionStats(
            requests=len(rows),
            errors=sum(1 for s in rows if not s[1]),
            p99_ms=_quantile(latencies, 0.99),
            outputs=tuple(s[3] for s in rows if s[1]),
            p50_ms=_quantile(latencies, 0.50),
        )


def _quantile(ordered: list[float], q: float) -> float:
    """The q-quantile of sorted values (nearest rank); 0 for none."""
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)] if ordered else 0.0


def analyse(
    plan: events_pb2.CanaryPlan, stable: VersionStats, candidate: VersionStats, elapsed_s: float
) -> Analysis:
    """The verdict on the current step. Failures are decided as soon as they show;
    a pass needs the step's minimum requests and duration."""
    step = plan.steps[plan.current_step]
    distance = output_distance(stable.outputs, candidate.outputs)
    reasons = []
    if candidate.requests:
        increase = candidate.error_rate - stable.error_rate
        if increase > plan.max_error_rate_increase and candidate.errors >= 3:
            reasons.append(
                f"error rate {candidate.error_rate:.1%} vs stable {stable.error_rate:.1%} "
                f"(allowed increase {plan.max_error_rate_increase:.1%})"
            )
        ratio = plan.max_p99_latency_ratio
        slower_tail = candidate.p99_ms > ratio * stable.p99_ms + LATENCY_SLACK_MS
        # A slower model is slower at the median too; a tail-only gap between two versions
        # on the same hosts is load noise (it rolled back healthy candidates in practice).
        slower_body = candidate.p50_ms > ratio * stable.p50_ms + LATENCY_SLACK_MS / 2
        enough = stable.requests and candidate.requests >= LATENCY_MIN_REQUESTS
        if enough and slower_tail and slower_body:
            reasons.append(
                f"p99 latency {candidate.p99_ms:.1f} ms vs stable {stable.p99_ms:.1f} ms, "
                f"p50 {candidate.p50_ms:.1f} vs {stable.p50_ms:.1f} ms "
                f"(allowed {ratio:g}x + {LATENCY_SLACK_MS:g} ms)"
            )
        if (
            candidate.requests >= 50
            and stable.requests >= 50
            and distance > plan.max_output_distance
        ):
            reasons.append(f"output distance {distance:.3f} (allowed {plan.max_output_distance:g})")
    if reasons:
        return Analysis(Verdict.FAIL, tuple(reasons), stable, candidate, distance)
    if candidate.requests < step.min_requests or elapsed_s < step.min_duration_s:
        return Analysis(Verdict.WAIT, (), stable, candidate, distance)
    return Analysis(Verdict.PASS, (), stable, candidate, distance)
