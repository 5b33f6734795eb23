"""The online detectors keep their stated false-alarm budget on skewed and heavy-tailed
features: normal scores against the baseline sample (driftloop.stats.scores), on seeded
lognormal, Student-t (3 df) and Pareto streams.

The budget is stated as ARL0 per stream: a VersionMonitor built with `false_alarm_events`
F over m streams gives each stream F * m stable events between false alarms on average,
so n stable events over its m streams may bring n / F false alarms. The production budget
(1 in 220 million events a stream) is beyond a seconds-long test, and a skewed stream's
excess grows with the threshold; these tests take 20,000 (and 100,000) events a stream,
with 40 streams of 100,000 events (4 million values), where the expected count is large
enough to measure and the transform is seen to make every shape behave like the normal.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest

from driftloop.drift.online import VersionMonitor
from driftloop.models.baseline import Baseline, numeric_baseline
from driftloop.stats.cusum import DEFAULT_K, CusumBank, threshold_for
from driftloop.stats.scores import NormalScores, normal_scores

FloatArray = npt.NDArray[np.float64]
Draw = Callable[[np.random.Generator, tuple[int, ...]], FloatArray]
SHAPES: dict[str, Draw] = {
    "normal": lambda rng, size: rng.normal(size=size),
    "lognormal": lambda rng, size: rng.lognormal(0.0, 1.0, size=size),
    "student_t3": lambda rng, size: rng.standard_t(3, size=size),
    "pareto3": lambda rng, size: rng.pareto(3.0, size=size),
}
STREAMS = 40
EVENTS = 100_000
BATCH = 10_000


def stable_run(shape: str, per_stream: float, seed: int) -> tuple[int, int, float]:
    """False alarms over EVENTS stable events on STREAMS streams of one shape, each with a
    baseline of its own (20,000 training values, the 2,000-value sample kept): by the
    monitor, and as the service did before (mean and std; the threshold of the raised
    reference value)."""
    draw = SHAPES[shape]
    rng = np.random.default_rng(seed)
    baseline = Baseline(
        numeric=[numeric_baseline(f"x{i}", draw(rng, (20_000,)), rng) for i in range(STREAMS)]
    )
    monitor = VersionMonitor(baseline, "regression", per_stream / STREAMS)
    assert len(monitor.streams) == STREAMS
    k = DEFAULT_K + 2.0 / math.sqrt(2000)
    former = CusumBank(STREAMS, threshold_for(k, per_stream), k)
    mean = np.asarray([b.mean for b in baseline.numeric])
    std = np.asarray([b.std for b in baseline.numeric])
    data = draw(rng, (EVENTS, STREAMS))
    alarms = formerly = 0
    for start in range(0, EVENTS, BATCH):
        batch = data[start : start + BATCH]
        alarms += len(monitor.observe(batch, np.zeros(0)))
        formerly += len(former.update((batch - mean) / std))
    budget = EVENTS * STREAMS / per_stream
    return alarms, formerly, budget


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("per_stream", [20_000.0, 100_000.0])
def test_stable_streams_of_any_shape_stay_within_the_stated_budget(
    shape: str, per_stream: float
) -> None:
    alarms, _, budget = stable_run(shape, per_stream, seed=61)
    assert alarms <= budget


@pytest.mark.parametrize("shape", ["lognormal", "pareto3"])
def test_standardised_by_mean_and_std_skewed_streams_overran_the_budget(shape: str) -> None:
    alarms, formerly, budget = stable_run(shape, 20_000.0, seed=62)
    assert formerly > 3 * budget  # the problem the normal scores solve
    assert alarms <= budget


def test_normal_scores_of_a_normal_feature_are_its_standardised_values() -> None:
    rng = np.random.default_rng(63)
    sample = rng.normal(10.0, 2.0, size=2000)
    scores = NormalScores(sample)
    x = np.linspace(6.0, 14.0, 81)  # within two sigma; further out the sample is thin
    assert np.max(np.abs(scores(x) - (x - sample.mean()) / sample.std())) < 0.1
    on_sample = scores(sample)
    assert on_sample.mean() == pytest.approx(0.0, abs=1e-12)
    assert on_sample.std() == pytest.approx(1.0, abs=1e-12)


def test_normal_scores_are_bounded_keep_gaps_and_handle_ties() -> None:
    rng = np.random.default_rng(64)
    scores = NormalScores(rng.pareto(1.0, size=2000))  # no finite mean
    low, high = scores.bounds
    assert -3.6 < low < -3.3 and 3.3 < high < 3.6
    z = scores(np.asarray([-1.0, np.nan, 1e12]))
    assert z[0] == low and np.isnan(z[1]) and z[2] == high
    # A discrete feature: one score per value, mean 0 and variance 1 over the sample.
    counts = rng.poisson(0.3, size=2000).astype(np.float64)
    discrete = NormalScores(counts)
    on_sample = discrete(counts)
    assert len(np.unique(on_sample)) == len(np.unique(counts))
    assert on_sample.mean() == pytest.approx(0.0, abs=1e-12)
    assert on_sample.std() == pytest.approx(1.0, abs=1e-12)
    # A constant cannot shift: no transform, and the monitor leaves such a stream out.
    assert normal_scores([1.0, 1.0, np.nan]) is None
    with pytest.raises(ValueError, match="two distinct"):
        NormalScores([2.0, 2.0])


def test_the_baseline_bins_anchor_the_cdf_at_the_training_shares() -> None:
    # A sample that over-represents the lower half: 800 values below 0, 200 above, where
    # the training rows (the bins) had half on each side of 0.
    rng = np.random.default_rng(65)
    sample = np.concatenate([-rng.random(800) - 0.01, rng.random(200) + 0.01])
    plain = NormalScores(sample)
    anchored = NormalScores(sample, [0.0], [0.5, 0.5])
    assert anchored(np.asarray([0.0]))[0] == pytest.approx(0.0, abs=0.05)
    assert plain(np.asarray([0.0]))[0] > 0.7  # the sample's own share below: 0.8
    # A bin with training rows but no sample value: the sample's own CDF.
    assert np.array_equal(NormalScores(sample, [0.0, 5.0], [0.4, 0.4, 0.2])(sample), plain(sample))
