"""The drift service's sequential canary judgement (driftloop.drift.canary.judge) on
simulated canaries, asked at every round as the gateway's controller asks it: a harmless
candidate is failed at most alpha of the time however often it is looked at, real harm
is caught, and sufficient evidence is reported only when the candidate is non-inferior."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from driftloop.drift.canary import CanaryLimits, CanaryResult, VersionTraffic, judge

FloatArray = npt.NDArray[np.float64]
# Every round (one controller look) brings this many stable and candidate requests.
SIZES = (100, 50)
ROUNDS = 12


def traffic(
    version: str, times: FloatArray, failed: npt.NDArray[np.bool_], quality: FloatArray
) -> VersionTraffic:
    """Requests at `times`; every answered one is labelled when it is served."""
    ok = ~failed
    return VersionTraffic(
        version=version,
        times=times,
        failed=failed,
        latency_ms=np.full(times.size, 2.0),
        outputs=np.full(int(ok.sum()), 0.5),
        label_times=times[ok],
        quality=quality[ok],
    )


def canary(
    seed: int,
    stable: tuple[float, float],
    candidate: tuple[float, float],
    rounds: int = ROUNDS,
    sizes: tuple[int, int] = SIZES,
) -> Iterator[tuple[VersionTraffic, VersionTraffic]]:
    """A seeded canary, (error rate, accuracy) per version: the traffic so far after each
    round. Round r's requests are served in [r, r + 1) seconds."""
    rng = np.random.default_rng(seed)
    arms = []
    for (error_rate, accuracy), size in zip((stable, candidate), sizes, strict=True):
        n = size * rounds
        times = np.repeat(np.arange(rounds, dtype=np.float64), size) + rng.random(n)
        failed = rng.random(n) < error_rate
        right = (rng.random(n) < accuracy).astype(np.float64)
        arms.append((size, times, failed, right))
    for r in range(1, rounds + 1):
        (sa, ta, fa, qa), (sb, tb, fb, qb) = arms
        yield (
            traffic("1", ta[: sa * r], fa[: sa * r], qa[: sa * r]),
            traffic("2", tb[: sb * r], fb[: sb * r], qb[: sb * r]),
        )


def every_round(
    seed: int,
    stable: tuple[float, float],
    candidate: tuple[float, float],
    limits: CanaryLimits,
    rounds: int = ROUNDS,
    sizes: tuple[int, int] = SIZES,
) -> list[CanaryResult]:
    return [judge(a, b, limits) for a, b in canary(seed, stable, candidate, rounds, sizes)]


def z_test_fails(a: VersionTraffic, b: VersionTraffic, limits: CanaryLimits) -> bool:
    """The fixed-horizon rule this replaced: a one-sided two-sample z-test of the accuracy
    drop at alpha, on the labelled rows so far."""
    if min(a.quality.size, b.quality.size) < limits.min_labelled:
        return False
    drop = float(a.quality.mean() - b.quality.mean())
    spread = math.sqrt(a.quality.var() / a.quality.size + b.quality.var() / b.quality.size)
    p_value = 0.5 * math.erfc(drop / max(spread, 1e-12) / math.sqrt(2.0))
    return drop > limits.max_quality_drop and p_value < limits.alpha


def test_a_harmless_candidate_asked_at_every_round_is_failed_at_most_alpha_of_the_time() -> None:
    # No difference at all, and no tolerance: "no difference" is the very edge of harm for
    # both the error rate and quality, the hardest case for the false-FAIL guarantee.
    limits = CanaryLimits(max_error_rate_increase=0.0, max_quality_drop=0.0, alpha=0.05)
    runs, sequential, fixed = 300, 0, 0
    for seed in range(runs):
        failed = z_failed = False
        for a, b in canary(seed, (0.02, 0.8), (0.02, 0.8)):
            failed |= judge(a, b, limits).verdict == "fail"
            z_failed |= z_test_fails(a, b, limits)
        sequential += failed
        fixed += z_failed
    tolerance = 3 * math.sqrt(limits.alpha * (1 - limits.alpha) / runs)
    share = sequential / runs
    assert share <= limits.alpha + tolerance, f"{sequential}/{runs} null canaries failed"
    # The simulation sees the inflation of a test looked at every round: the fixed z-test
    # on the same canaries fails harmless candidates well beyond alpha.
    assert fixed / runs > limits.alpha + tolerance, f"the z-test failed {fixed}/{runs}"


def test_real_harm_is_caught_error_rate_and_quality() -> None:
    limits = CanaryLimits()
    for seed in range(5):
        # Calls that fail 5% of the time against none: the allowed increase is 2%. Caught
        # after 900 candidate requests in the median, 1,500 at most over 40 seeds.
        results = every_round(seed, (0.0, 0.8), (0.05, 0.8), limits, 20, sizes=(100, 100))
        final = results[-1]
        assert final.verdict == "fail" and "error rate" in final.reasons[0], final.reasons
        assert final.error_rate_difference[0] > limits.max_error_rate_increase
        # Right 70% of the time instead of 80%.
        results = every_round(seed, (0.0, 0.8), (0.0, 0.7), limits, sizes=(300, 300))
        assert results[-1].verdict == "fail" and "quality" in results[-1].reasons[0]
        assert not any(r.evidence_sufficient for r in results)
    # Confidently wrong: failed at the first look that has the minimum of labelled rows.
    first = every_round(0, (0.0, 0.85), (0.0, 0.15), limits, rounds=2, sizes=(100, 50))[0]
    assert first.candidate.labelled == limits.min_labelled
    assert first.verdict == "fail" and "quality" in first.reasons[0]


def test_a_candidate_that_degrades_late_is_still_failed() -> None:
    # Ten clean rounds (the error-rate interval shrinks below the tolerance), then the
    # candidate fails 20% of its calls, as under the load of a later step.
    limits = CanaryLimits()
    rng = np.random.default_rng(3)
    times = np.arange(0.0, 20.0, 0.01)  # 100 requests a second per version, 20 s
    clean = np.zeros(times.size, dtype=bool)
    failing = (times >= 10.0) & (rng.random(times.size) < 0.2)
    right = np.ones(times.size)
    before = judge(
        traffic("1", times[:1000], clean[:1000], right[:1000]),
        traffic("2", times[:1000], failing[:1000], right[:1000]),
        limits,
    )
    assert before.verdict == "pass" and before.error_rate_difference[1] < 0.02
    after = judge(traffic("1", times, clean, right), traffic("2", times, failing, right), limits)
    assert after.verdict == "fail" and "error rate" in after.reasons[0]


def test_sufficient_evidence_only_for_a_non_inferior_candidate_with_enough_rows() -> None:
    limits = CanaryLimits()
    better = every_round(1, (0.0, 0.80), (0.0, 0.85), limits, sizes=(500, 500))
    assert better[-1].verdict == "pass" and better[-1].evidence_sufficient
    assert better[-1].quality_difference[0] > -limits.max_quality_drop
    assert not better[0].evidence_sufficient  # 500 rows each are not enough yet
    # An equal candidate needs many more rows: the interval must shrink inside the 2%.
    equal = every_round(2, (0.0, 0.8), (0.0, 0.8), limits, rounds=10, sizes=(2500, 2500))
    assert equal[-1].evidence_sufficient and not equal[0].evidence_sufficient
    # Below the minimum of labelled rows nothing counts, however good the candidate.
    stable, candidate = next(canary(3, (0.0, 0.6), (0.0, 0.95), rounds=1, sizes=(1000, 100)))
    unlabelled = dataclasses.replace(
        candidate, label_times=candidate.label_times[:40], quality=candidate.quality[:40]
    )
    few = judge(stable, unlabelled, limits)
    assert few.verdict == "pass" and not few.evidence_sufficient
    assert few.candidate.labelled == 40 and math.isnan(few.quality_difference[0])
    # A candidate exactly at the tolerance (2 points worse) is rarely called sufficient,
    # at any round: at most alpha / 2 of the time.
    runs = 60
    wrongly = sum(
        any(r.evidence_sufficient for r in every_round(seed, (0.0, 0.8), (0.0, 0.78), limits))
        for seed in range(runs)
    )
    assert wrongly / runs <= limits.alpha / 2 + 3 * math.sqrt(limits.alpha / 2 / runs)


def test_regression_quality_is_the_negative_mae_relative_to_the_stable_one() -> None:
    limits = CanaryLimits()
    rng = np.random.default_rng(5)
    times = np.arange(0.0, 10.0, 0.01)
    ok = np.zeros(times.size, dtype=bool)

    def regression(version: str, mae: float) -> VersionTraffic:
        # |N(0, s)| has mean s * sqrt(2 / pi): s = 1.2533 * MAE.
        errors = np.abs(rng.normal(0.0, mae * 1.2533, times.size))
        return dataclasses.replace(traffic(version, times, ok, -errors), classifier=False)

    stable = regression("1", 40.0)
    assert judge(stable, regression("2", 40.0), limits).verdict == "pass"
    worse = judge(stable, regression("2", 60.0), limits)
    assert worse.verdict == "fail" and "quality" in worse.reasons[0]
    assert worse.candidate.accuracy < -55.0  # -MAE
