"""The evaluation core (driftloop.drift.evaluation): injections, scoring and a seeded
replay whose detection delays and false alarms are exact."""

from __future__ import annotations

import math

import numpy as np
import pytest

from driftloop.drift.evaluation import (
    NEW_CATEGORY,
    Injection,
    evaluate,
    inject,
    parse_injection,
    reference_of,
    river_alarms,
    score,
)
from driftloop.kit.errors import InvalidArgument


def columns(seed: int, rows: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "x1": rng.normal(size=rows),
        "x2": rng.lognormal(size=rows),
        "plan": rng.choice(np.asarray(["basic", "pro"]), size=rows),
    }


def test_an_injection_is_parsed_with_defaults_and_checked() -> None:
    assert parse_injection("feature=x3,kind=shift,size=0.5,onset=5000") == Injection(
        "x3", "shift", 0.5, 5000
    )
    assert parse_injection("feature=x3,kind=missing", stream_events=100) == Injection(
        "x3", "missing", 0.5, 50
    )
    for bad in ("feature=x3", "feature=x3,kind=melt,onset=1", "feature=x3,kind=shift,onset=a",
                "feature=x3,kind=missing,size=2,onset=1", "x3,kind=shift"):  # fmt: skip
        with pytest.raises(InvalidArgument, match="inject"):
            parse_injection(bad, stream_events=100)
    with pytest.raises(InvalidArgument, match="onset 100"):
        parse_injection("feature=x3,kind=shift,onset=100", stream_events=100)


def test_each_kind_changes_only_the_events_from_the_onset() -> None:
    data = columns(1, 4000)
    baseline = reference_of(data)
    x1 = next(b for b in baseline.numeric if b.feature == "x1")
    rng = np.random.default_rng(0)
    shifted = inject(data["x1"], Injection("x1", "shift", 0.5, 1000), baseline, rng)
    assert np.array_equal(shifted[:1000], data["x1"][:1000])
    assert np.allclose(shifted[1000:] - data["x1"][1000:], 0.5 * x1.std)
    scaled = np.asarray(
        inject(data["x1"], Injection("x1", "scale", 4.0, 1000), baseline, rng), dtype=np.float64
    )
    assert np.allclose(scaled[1000:] - x1.mean, 2.0 * (data["x1"][1000:] - x1.mean))
    stuck = inject(data["x1"], Injection("x1", "constant", math.nan, 1000), baseline, rng)
    assert set(stuck[1000:].tolist()) == {x1.mean}
    missing = inject(data["x1"], Injection("x1", "missing", 0.25, 1000), baseline, rng)
    assert not np.isnan(missing[:1000]).any()
    assert np.isnan(missing[1000:]).mean() == pytest.approx(0.25, abs=0.03)
    new = inject(data["plan"], Injection("plan", "category", 0.2, 1000), baseline, rng)
    assert NEW_CATEGORY not in new[:1000].tolist()
    assert (new[1000:] == NEW_CATEGORY).mean() == pytest.approx(0.2, abs=0.03)
    with pytest.raises(InvalidArgument, match="category needs a text feature"):
        inject(data["x1"], Injection("x1", "category", 0.2, 10), baseline, rng)
    with pytest.raises(InvalidArgument, match="shift needs a numeric feature"):
        inject(data["plan"], Injection("plan", "shift", 1.0, 10), baseline, rng)


def test_score_counts_false_alarms_before_and_the_delay_after_the_onset() -> None:
    outcome = score("d", [700, 50, 1000, 1200], onset=1000, events=5000)
    assert (outcome.detected, outcome.delay, outcome.false_alarms) == (True, 1, 2)
    assert outcome.false_alarms_per_10k == 20.0
    missed = score("d", [3], onset=1000, events=5000)
    assert (missed.detected, missed.delay, missed.false_alarms) == (False, None, 1)


class Threshold:
    """A detector that signals at every value above 1 (river's interface)."""

    drift_detected = False

    def update(self, x: float) -> None:
        self.drift_detected = x > 1


def test_river_alarms_skip_missing_values_and_stop_after_the_change() -> None:
    values = [0.0, 2.0, math.nan, 0.0, 3.0, 4.0]
    assert river_alarms(Threshold(), values) == [1, 4, 5]
    assert river_alarms(Threshold(), values, stop_from=3) == [1, 4]


def test_a_seeded_replay_has_exact_delays_and_false_alarms() -> None:
    reference, stream = columns(2, 2000), columns(3, 20_000)
    injections = [
        Injection("x1", "shift", 0.5, 10_000),
        Injection("x2", "scale", 3.0, 10_000),
        Injection("plan", "category", 0.3, 10_000),
        Injection("x1", "missing", 0.1, 10_000),
    ]
    seen: list[tuple[int, int]] = []
    results = evaluate(
        reference_of(reference), stream, injections, progress=lambda d, t: seen.append((d, t))
    )
    table = {
        (r.injection.kind, o.detector): (o.detected, o.delay, o.false_alarms)
        for r in results
        for o in r.outcomes
    }
    # Every detector on the same seeded values: driftloop's (the drift service's online
    # module as it is tuned now: a retuning moves its delays here) and river's.
    assert table == {
        ("shift", "driftloop online"): (True, 96, 0),
        ("shift", "river ADWIN"): (True, 112, 0),
        ("shift", "river PageHinkley"): (True, 69, 6),
        ("scale", "driftloop online"): (True, 48, 0),
        ("scale", "river ADWIN"): (True, 16, 2),
        ("scale", "river PageHinkley"): (True, 6, 34),
        ("category", "driftloop online"): (True, 21, 0),
        ("missing", "driftloop online"): (True, 117, 0),
        ("missing", "river ADWIN"): (False, None, 0),
        ("missing", "river PageHinkley"): (True, 1110, 6),
    }
    assert results[0].outcomes[0].false_alarms_per_10k == 0.0
    assert results[1].outcomes[2].false_alarms_per_10k == 34.0
    assert results[2].notes == ["river: plan is not numeric"]
    assert seen[-1] == (20_000, 20_000) and len(seen) == 4 * 20


def test_without_river_or_with_a_column_missing() -> None:
    reference, stream = columns(2, 2000), columns(3, 3000)
    [result] = evaluate(
        reference_of(reference), stream, [Injection("plan", "missing", 0.5, 1000)], with_river=False
    )
    assert [o.detector for o in result.outcomes] == ["driftloop online"] and result.notes == []
    del stream["x2"]
    with pytest.raises(InvalidArgument, match="the stream has no column x2"):
        evaluate(reference_of(reference), stream, [Injection("x1", "shift", 1.0, 1000)])
