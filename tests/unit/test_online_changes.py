"""The online detectors catch the changes a mean CUSUM misses (driftloop.drift.online): a
feature stuck at a constant, a variance doubling, a new category and a burst of missing
values, each within a stated number of events; and 1M stable events of normal,
lognormal and categorical features (with the baseline's missing-value rate) raise none.

The budget is the service default (10,000,000 stable events between false alarms for the
model) over a model of two numeric features (normal, lognormal) and a categorical one
(four categories), so the delays are those a real monitor has. Each change starts at
event 1,000 of a seeded stream and is fed in batches of 500, over ten seeds; the stated
bound is the worst delay measured over thirty seeds with some margin (the median delays
are in the README's drift section).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pytest

from driftloop.drift.detection import category_codes
from driftloop.drift.online import (
    MISSING_CODE,
    UNSEEN_CODE,
    OnlineAlarm,
    VersionMonitor,
    encode,
)
from driftloop.models.baseline import Baseline, categorical_baseline, numeric_baseline
from driftloop.stats.cusum import (
    CusumBank,
    bernoulli_steps,
    design_share,
    log_threshold,
)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
PLANS = ["basic", "standard", "premium", "trial"]
SHARES = [0.4, 0.3, 0.2, 0.1]
CHANGE = 1000
EVENTS = 3000
BUDGET = 10_000_000.0
# Worst first-alarm delay (events after the change) and the stream that must fire.
WITHIN = {
    "constant at the median": (40, "x:spread"),
    "constant at the upper quartile": (40, "x:spread"),
    "variance doubled": (600, "x:spread"),
    "new category at 10%": (250, "plan:share"),
    "20% missing": (300, "x:missing"),  # from the baseline's 2%
}


@pytest.fixture(scope="module")
def baseline() -> Baseline:
    rng = np.random.default_rng(7)
    normal = rng.normal(size=20_000)
    normal[rng.random(20_000) < 0.02] = np.nan  # the baseline's own missing values
    return Baseline(
        numeric=[
            numeric_baseline("x", normal, rng),
            numeric_baseline("y", rng.lognormal(size=20_000), rng),
        ],
        categorical=[categorical_baseline("plan", rng.choice(np.asarray(PLANS), 20_000, p=SHARES))],
    )


def stable(rng: np.random.Generator, n: int) -> tuple[FloatArray, IntArray]:
    """n stable events: features (x normal with 2% missing, y lognormal) and plan codes."""
    x = rng.normal(size=n)
    x[rng.random(n) < 0.02] = np.nan
    features = np.column_stack([x, rng.lognormal(size=n)])
    return features, rng.choice(len(PLANS), n, p=SHARES).astype(np.int64)[:, None]


def changed(change: str, seed: int) -> tuple[FloatArray, IntArray]:
    rng = np.random.default_rng(seed)
    features, plans = stable(rng, EVENTS)
    after = slice(CHANGE, None)
    if change == "constant at the median":
        features[after, 0] = 0.0
    elif change == "constant at the upper quartile":
        features[after, 0] = 0.674  # |z| at its median: the mean stream moves slowly
    elif change == "variance doubled":
        features[after, 0] *= np.sqrt(2.0)
    elif change == "new category at 10%":
        plans[after][rng.random(EVENTS - CHANGE) < 0.1] = UNSEEN_CODE
    elif change == "20% missing":
        features[after, 0][rng.random(EVENTS - CHANGE) < 0.2] = np.nan
    return features, plans


def feed(
    monitor: VersionMonitor, features: FloatArray, plans: IntArray, batch: int
) -> list[OnlineAlarm]:
    alarms: list[OnlineAlarm] = []
    for start in range(0, features.shape[0], batch):
        rows = slice(start, start + batch)
        alarms += monitor.observe(features[rows], np.zeros(0), plans[rows])
    return alarms


@pytest.mark.parametrize("change", WITHIN)
def test_each_change_is_caught_on_its_stream_within_the_stated_events(
    baseline: Baseline, change: str
) -> None:
    bound, stream = WITHIN[change]
    for seed in range(10):
        monitor = VersionMonitor(baseline, "regression", BUDGET)
        alarms = feed(monitor, *changed(change, 100 + seed), batch=500)
        assert alarms, f"{change}: no alarm (seed {seed})"
        first = alarms[0]
        assert first.stream == stream and first.kind == "data"
        assert CHANGE <= first.index < CHANGE + bound


def test_a_million_stable_events_raise_no_alarm(baseline: Baseline) -> None:
    monitor = VersionMonitor(baseline, "regression", BUDGET)
    assert monitor.watched == [
        "x",
        "y",
        "x:spread",
        "y:spread",
        "x:missing",
        "y:missing",
        "plan:share",
        "plan:missing",
    ]
    rng = np.random.default_rng(11)
    alarms = 0
    for _ in range(10):
        features, plans = stable(rng, 100_000)
        alarms += len(monitor.observe(features, np.zeros(0), plans))
    assert alarms == 0


def test_alarms_do_not_depend_on_the_batching(baseline: Baseline) -> None:
    # The spread streams pair events across batch boundaries; an odd batch size splits
    # pairs.
    features, plans = changed("variance doubled", 5)
    one = feed(VersionMonitor(baseline, "regression", BUDGET), features, plans, EVENTS)
    odd = feed(VersionMonitor(baseline, "regression", BUDGET), features, plans, 333)
    assert one and [a.index for a in one] == [a.index for a in odd]
    assert [(a.stream, a.start, a.direction) for a in one] == [
        (a.stream, a.start, a.direction) for a in odd
    ]
    assert [a.statistic for a in one] == pytest.approx([a.statistic for a in odd])


def test_a_missing_categorical_value_is_no_evidence_about_shares(baseline: Baseline) -> None:
    monitor = VersionMonitor(baseline, "regression", BUDGET)
    features, plans = stable(np.random.default_rng(3), 4000)
    plans[2000:] = MISSING_CODE
    alarms = feed(monitor, features, plans, 500)
    assert {a.stream for a in alarms} == {"plan:missing"}


def test_encode_maps_categories_unseen_and_missing() -> None:
    values = np.asarray(["trial", None, "gold", "basic", "gold"], dtype=object)
    assert encode(values, PLANS).tolist() == [3, MISSING_CODE, UNSEEN_CODE, 0, UNSEEN_CODE]
    assert encode(np.asarray([], dtype=object), PLANS).tolist() == []


def test_the_bernoulli_cusum_keeps_the_log_threshold_bound() -> None:
    # 200 streams of a rare event (p0 = 0.001, the floor) over 100,000 events: the bound
    # ARL0 >= exp(h) allows 20,000,000 / 2,000 = 10,000 / ... at most n / ARL0 alarms.
    rng = np.random.default_rng(9)
    arl = 100_000.0
    p0 = np.full(200, 0.001)
    p1 = np.asarray([design_share(p) for p in p0.tolist()])
    bank = CusumBank(200, log_threshold(arl), 0.0, two_sided=False)
    alarms = 0
    for _ in range(10):
        hits = (rng.random((10_000, 200)) < p0).astype(np.float64)
        alarms += len(bank.update(bernoulli_steps(hits, p0, p1)))
    assert alarms <= 100_000 * 200 / arl
    # A rise to the design share is caught: the walk climbs by KL(p1 || p0) an event.
    risen = (rng.random((5000, 1)) < p1[0]).astype(np.float64)
    one = CusumBank(1, log_threshold(arl), 0.0, two_sided=False)
    fired = one.update(bernoulli_steps(risen, p0[:1], p1[:1]))
    assert fired and all(a.direction == 1 for a in fired)
    assert design_share(0.4) == pytest.approx(0.8 / 1.4)
    assert design_share(0.001) == pytest.approx(0.011)


def test_without_categories_the_categorical_streams_see_no_evidence(
    baseline: Baseline,
) -> None:
    monitor = VersionMonitor(baseline, "regression", BUDGET)
    features, _ = stable(np.random.default_rng(4), 20_000)
    assert monitor.observe(features, np.zeros(0)) == []


def test_category_codes_read_the_logged_map_column_by_name() -> None:
    column = pa.array(
        [
            [("plan", "trial"), ("x", "1")],
            [],
            [("plan", "gold")],
            [("other", "a"), ("plan", "basic")],
        ],
        pa.map_(pa.string(), pa.string()),
    )
    codes = category_codes(column, ["plan", "other"], [PLANS, ["a"]])
    assert codes.tolist() == [
        [3, MISSING_CODE],
        [MISSING_CODE, MISSING_CODE],
        [UNSEEN_CODE, MISSING_CODE],
        [0, 0],
    ]
    # A slice (as a batch's rows are taken from the log) starts at its own offset.
    assert category_codes(column.slice(2), ["plan"], [PLANS]).tolist() == [[UNSEEN_CODE], [0]]
