"""Unit tests of the online CUSUM bank (driftloop.stats.cusum) against a plain-Python,
one-value-at-a-time reference of Page's recursion."""

from __future__ import annotations

import math

import numpy as np
import pytest

from driftloop.stats import Alarm, CusumBank, Floats, threshold_for
from driftloop.stats.cusum import DEFAULT_K, arl0


def reference(z: Floats, h: float, k: float) -> list[Alarm]:
    """Page's two-sided CUSUM, one value at a time: S = max(0, S + sign*z - k); a NaN
    leaves S unchanged; S > h alarms and restarts S from zero; `start` is one past the
    last event at which S was zero."""
    streams = z.shape[1]
    s = [[0.0] * streams for _ in range(2)]
    zero_at = [[0] * streams for _ in range(2)]
    alarms: list[Alarm] = []
    for t, row in enumerate(z.tolist()):
        for side, sign in ((0, 1), (1, -1)):
            for stream, value in enumerate(row):
                step = 0.0 if math.isnan(value) else sign * value - k
                statistic = max(0.0, s[side][stream] + step)
                if statistic == 0.0:
                    zero_at[side][stream] = t + 1
                if statistic > h:
                    alarms.append(Alarm(stream, t, zero_at[side][stream], sign, statistic))
                    statistic = 0.0
                    zero_at[side][stream] = t + 1
                s[side][stream] = statistic
    alarms.sort(key=lambda alarm: (alarm.index, alarm.stream))
    return alarms


def fed_in_batches(bank: CusumBank, z: Floats, cuts: list[int]) -> list[Alarm]:
    alarms: list[Alarm] = []
    for start, stop in zip([0, *cuts], [*cuts, len(z)], strict=True):
        alarms.extend(bank.update(z[start:stop]))
    return alarms


def identity(alarms: list[Alarm]) -> list[tuple[int, int, int, int]]:
    """What must match exactly; the statistic is a float summed in another order."""
    return [(a.stream, a.index, a.start, a.direction) for a in alarms]


def shifted_stream(seed: int, events: int = 3000) -> Floats:
    """Four standard-normal streams: stable, +1 sigma from event 1000, -0.5 sigma from
    event 2000, and +2 sigma between events 500 and 700 only (a shift that ends), with a
    few NaN values (missing features) sprinkled in."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(events, 4))
    z[1000:, 1] += 1.0
    z[2000:, 2] -= 0.5
    z[500:700, 3] += 2.0
    z[rng.choice(events, size=60, replace=False), rng.integers(0, 4, size=60)] = np.nan
    return z


H = threshold_for(DEFAULT_K, 10_000.0)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_bank_equals_the_one_at_a_time_recursion(seed: int) -> None:
    z = shifted_stream(seed)
    expected = reference(z, H, DEFAULT_K)
    alarms = CusumBank(4, H).update(z)
    assert len(expected) > 3  # the shifts alarm, repeatedly while they last
    assert identity(alarms) == identity(expected)
    assert [a.statistic for a in alarms] == pytest.approx([a.statistic for a in expected])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_batch_update_equals_one_at_a_time_updates(seed: int) -> None:
    z = shifted_stream(seed)
    whole = CusumBank(4, H)
    batch = whole.update(z)
    single = fed_in_batches(CusumBank(4, H), z, list(range(1, len(z))))
    cuts = sorted(np.random.default_rng(seed).choice(np.arange(1, len(z)), 40, replace=False))
    ragged = fed_in_batches(CusumBank(4, H), z, [int(cut) for cut in cuts])
    assert identity(single) == identity(batch)
    assert identity(ragged) == identity(batch)
    assert [a.statistic for a in single] == pytest.approx([a.statistic for a in batch])
    assert whole.events == len(z)


def test_the_exact_alarm_on_a_seeded_stream() -> None:
    # One stream, stable for 1000 events, then shifted up by one sigma (seed 20261129).
    # h for 10,000 stable events between false alarms; k = 0.25. No false alarm before the
    # shift; the recursion crosses h at event 1012 (counted from the detector's start),
    # having last been zero at event 986, in the stable noise just before the change.
    z = np.random.default_rng(20261129).normal(size=(2000, 1))
    z[1000:] += 1.0
    bank = CusumBank(1, H)
    alarms = bank.update(z)
    first = alarms[0]
    assert (first.stream, first.index, first.start, first.direction) == (0, 1012, 987, 1)
    assert first.statistic > H
    assert identity(alarms) == identity(reference(z, H, DEFAULT_K))


def test_constant_steps_alarm_at_the_hand_computed_events() -> None:
    # k = 0.25 and z = 1.25: each event adds exactly 1. With h = 4.5 the statistic reads
    # 1, 2, 3, 4, 5 and alarms on the fifth shifted event; ten stable zeros first put the
    # change's start at event 10. Downward shifts alarm the same way with direction -1.
    z = np.zeros((15, 2))
    z[10:, 0] = 1.25
    z[10:, 1] = -1.25
    alarms = CusumBank(2, 4.5).update(z)
    assert alarms == [Alarm(0, 14, 10, 1, 5.0), Alarm(1, 14, 10, -1, 5.0)]


def test_after_an_alarm_the_stream_restarts_from_zero() -> None:
    # A persisting shift alarms again only after another h of evidence: every five events
    # here, each alarm's start one past the previous alarm. The other stream and the other
    # side of the alarmed stream are untouched by the restart.
    z = np.zeros((20, 2))
    z[:, 0] = 1.25
    z[:, 1] = [1.25] * 4 + [0.0] * 16
    bank = CusumBank(2, 4.5)
    alarms = bank.update(z)
    assert [(a.index, a.start) for a in alarms] == [(4, 0), (9, 5), (14, 10), (19, 15)]
    assert {a.stream for a in alarms} == {0}
    # Stream 1 reached 4, then drained by 0.25 per stable event: 16 events bring it to 0,
    # so it needs the full 4.5 again: four more steps of 1 do not alarm, the fifth does.
    assert bank.update(np.tile([[0.0, 1.25]], (4, 1))) == []
    assert bank.update(np.array([[0.0, 1.25]])) == [Alarm(1, 24, 20, 1, 5.0)]
    # Split across batches, the restarts fall on the same events.
    split = CusumBank(2, 4.5)
    assert fed_in_batches(split, z, [3, 7, 8, 13]) == alarms


def test_a_shift_that_ends_stops_alarming() -> None:
    z = np.zeros((100, 1))
    z[:12] = 1.25
    alarms = CusumBank(1, 4.5).update(z)
    assert [a.index for a in alarms] == [4, 9]


def test_nan_leaves_the_statistic_unchanged() -> None:
    # Two NaN events in a run of unit steps delay the alarm by exactly two events; the
    # events still count. A NaN while the statistic is zero keeps it at zero, so the change
    # starts after it. The NaN touches its own stream only.
    z = np.array(
        [[1.25, 1.25], [1.25, 1.25], [math.nan, 1.25], [math.nan, 1.25], [1.25, 1.25]]
        + [[1.25, 0.0]] * 3
    )
    bank = CusumBank(2, 4.5)
    assert bank.update(z) == [Alarm(1, 4, 0, 1, 5.0), Alarm(0, 6, 0, 1, 5.0)]
    assert bank.events == 8
    late = np.array([[0.0], [math.nan], [math.nan]] + [[1.25]] * 5)
    assert CusumBank(1, 4.5).update(late) == [Alarm(0, 7, 3, 1, 5.0)]
    assert CusumBank(1, 4.5).update(np.full((1000, 1), math.nan)) == []


def test_an_empty_batch_changes_nothing() -> None:
    bank = CusumBank(3, 4.5)
    assert bank.update(np.empty((0, 3))) == []
    assert bank.events == 0


def test_bad_shapes_and_parameters_are_refused() -> None:
    bank = CusumBank(3, 4.5)
    with pytest.raises(ValueError, match=r"\(n, 3\)"):
        bank.update(np.zeros((5, 2)))
    with pytest.raises(ValueError, match=r"\(n, 3\)"):
        bank.update(np.zeros(3))
    with pytest.raises(ValueError, match="streams"):
        CusumBank(0, 4.5)
    with pytest.raises(ValueError, match="h must be positive"):
        CusumBank(1, 0.0)
    with pytest.raises(ValueError, match="k non-negative"):
        CusumBank(1, 4.5, k=-0.1)


@pytest.mark.parametrize(("h", "two_sided_arl0"), [(4.0, 168.0), (5.0, 465.0)])
def test_siegmund_matches_the_published_run_lengths(h: float, two_sided_arl0: float) -> None:
    # Montgomery, Introduction to Statistical Quality Control, the two-sided tabular CUSUM
    # with k = 0.5: in-control ARL 168 for h = 4 and 465 for h = 5 (Siegmund within 1 %).
    assert arl0(0.5, h) / 2 == pytest.approx(two_sided_arl0, rel=0.01)


@pytest.mark.parametrize("events", [100.0, 10_000.0, 1e7, 2.2e8])
def test_threshold_for_inverts_the_two_sided_run_length(events: float) -> None:
    h = threshold_for(DEFAULT_K, events)
    assert arl0(DEFAULT_K, h) / 2 == pytest.approx(events, rel=1e-9)
    assert threshold_for(DEFAULT_K, events * 10) > h


def test_a_stream_alarming_thousands_of_times_in_one_batch_equals_the_recursion() -> None:
    # A value far off, every event: an alarm every few events, 10,000 in the batch (the
    # restart after each alarm once recursed, and ran out of depth at about a thousand).
    rng = np.random.default_rng(3)
    z = rng.normal(size=(30_000, 3))
    z[:, 1] += 6.0
    bank = CusumBank(3, 4.0, DEFAULT_K)
    alarms = bank.update(z)
    expected = reference(z, 4.0, DEFAULT_K)
    assert len(alarms) > 5_000
    assert identity(alarms) == identity(expected)
    assert [a.statistic for a in alarms] == pytest.approx([a.statistic for a in expected])
