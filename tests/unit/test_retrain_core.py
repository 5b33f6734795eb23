"""The retrainer's pure core: trigger rules, the champion/challenger gate, snapshots,
policy validation and the deterministic train-and-score job, on seeded data."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from scipy.stats import binomtest

from driftloop.kit.errors import FailedPrecondition, InvalidArgument
from driftloop.models.artifacts import LocalArtifactStore, sha256_of
from driftloop.models.loading import VersionSpec
from driftloop.models.schema import Feature, Schema
from driftloop.models.table import Column, Table
from driftloop.models.training import TrainingSpec, train_linear
from driftloop.retrainer.gate import GateCheck, GateRules, Scored, Verdict, judge
from driftloop.retrainer.jobs import TrainJob, TrainResult, train_and_score
from driftloop.retrainer.policy import DEFAULT_STEPS_PERCENT, default_policy, validate_policy
from driftloop.retrainer.registry import VersionRecord
from driftloop.retrainer.snapshot import Snapshot, from_parquet, split_newest, to_parquet
from driftloop.retrainer.triggers import (
    DATA_VOLUME,
    DRIFT,
    MANUAL,
    PERFORMANCE,
    SCHEDULE,
    Decision,
    ModelActivity,
    Performance,
    Trigger,
    admit,
    asks_for_decision,
    drift_cause,
    new_data_cause,
    performance_breach,
    schedule_due,
    schedule_slot,
)
from driftloop.v1 import events_pb2, retrainer_pb2
from tests.retrain_data import MODEL, REGIONS, population

TextArray = npt.NDArray[np.str_]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

NOW = dt.datetime(2026, 6, 1, 12, 30, tzinfo=dt.UTC)
HOUR = 3600
RULES = GateRules(
    margin=0.01,
    alpha=0.05,
    secondary_tolerance=0.05,
    segment_tolerance=0.02,
    segment_min_rows=200,
    seed=0,
)


def policy(**changes: object) -> retrainer_pb2.TrainingPolicy:
    """The default policy of MODEL with `a__b=value` changes applied."""
    result = default_policy(MODEL)
    for path, value in changes.items():
        target: object = result
        *parents, leaf = path.split("__")
        for parent in parents:
            target = getattr(target, parent)
        if isinstance(value, list):
            field = getattr(target, leaf)
            del field[:]
            field.extend(value)
        else:
            setattr(target, leaf, value)
    return result


# ---------------------------------------------------------------- triggers: admit


AUTOMATIC: tuple[Trigger, ...] = (SCHEDULE, PERFORMANCE, DRIFT, DATA_VOLUME)


@pytest.mark.parametrize("trigger", AUTOMATIC)
def test_an_automatic_trigger_is_refused_when_the_policy_is_off(trigger: Trigger) -> None:
    decision = admit(policy(enabled=False), trigger, ModelActivity(), NOW, "the cause")
    assert decision == Decision(False, "the cause; automatic retraining is off for churn")


def test_a_manual_trigger_runs_when_the_policy_is_off() -> None:
    decision = admit(policy(enabled=False), MANUAL, ModelActivity(), NOW, "asked by ops")
    assert decision == Decision(True, "asked by ops")


@pytest.mark.parametrize("trigger", (MANUAL, *AUTOMATIC))
def test_no_trigger_starts_a_second_run_while_one_is_in_progress(trigger: Trigger) -> None:
    activity = ModelActivity(running_run="run-7", last_started=NOW - dt.timedelta(days=1))
    decision = admit(policy(), trigger, activity, NOW, "the cause")
    assert decision == Decision(False, "the cause; run run-7 is in progress")


@pytest.mark.parametrize("trigger", (MANUAL, *AUTOMATIC))
def test_no_trigger_starts_a_run_while_a_runs_rollout_is_in_progress(trigger: Trigger) -> None:
    activity = ModelActivity(rolling_out="v7 (run r1)")
    decision = admit(policy(), trigger, activity, NOW, "the cause")
    assert decision == Decision(False, "the cause; the rollout of v7 (run r1) is in progress")


def test_an_automatic_trigger_waits_out_the_cooldown_with_the_remaining_seconds() -> None:
    activity = ModelActivity(last_started=NOW - dt.timedelta(seconds=1000))
    decision = admit(policy(cooldown_s=HOUR), DRIFT, activity, NOW, "drift")
    assert decision == Decision(False, "drift; in cooldown for another 2600 s")


def test_the_cooldown_ends_exactly_when_its_seconds_have_passed() -> None:
    just_before = ModelActivity(last_started=NOW - dt.timedelta(seconds=HOUR - 1))
    assert admit(policy(cooldown_s=HOUR), SCHEDULE, just_before, NOW, "slot") == Decision(
        False, "slot; in cooldown for another 1 s"
    )
    exactly = ModelActivity(last_started=NOW - dt.timedelta(seconds=HOUR))
    assert admit(policy(cooldown_s=HOUR), SCHEDULE, exactly, NOW, "slot") == Decision(True, "slot")


def test_no_cooldown_and_no_previous_run_admit_at_once() -> None:
    recent = ModelActivity(last_started=NOW - dt.timedelta(seconds=1))
    assert admit(policy(cooldown_s=0), DRIFT, recent, NOW, "drift") == Decision(True, "drift")
    assert admit(policy(cooldown_s=HOUR), DRIFT, ModelActivity(), NOW, "drift") == Decision(
        True, "drift"
    )


def test_a_manual_trigger_bypasses_the_cooldown() -> None:
    activity = ModelActivity(last_started=NOW - dt.timedelta(seconds=5))
    assert admit(policy(cooldown_s=HOUR), MANUAL, activity, NOW, "ops") == Decision(True, "ops")


# ---------------------------------------------------------------- triggers: schedule


def test_schedule_slots_are_aligned_to_the_epoch() -> None:
    hour_start = dt.datetime(2026, 6, 1, 12, tzinfo=dt.UTC)
    slot = int(hour_start.timestamp()) // HOUR
    assert schedule_slot(hour_start, HOUR) == slot
    assert schedule_slot(hour_start + dt.timedelta(minutes=59, seconds=59), HOUR) == slot
    assert schedule_slot(hour_start + dt.timedelta(hours=1), HOUR) == slot + 1
    assert schedule_slot(hour_start - dt.timedelta(microseconds=1), HOUR) == slot - 1
    assert schedule_slot(dt.datetime(1970, 1, 1, 0, 0, 59, tzinfo=dt.UTC), 60) == 0


def test_a_new_slot_is_due_and_says_which() -> None:
    slot = schedule_slot(NOW, HOUR)
    due = schedule_due(policy(schedule__every_s=HOUR), NOW, slot - 1)
    assert due == f"schedule slot {slot} (every 3600 s)"


def test_a_slot_that_ran_is_not_due_again() -> None:
    slot = schedule_slot(NOW, HOUR)
    assert schedule_due(policy(schedule__every_s=HOUR), NOW, slot) == ""
    later_in_the_slot = NOW + dt.timedelta(minutes=29)
    assert schedule_due(policy(schedule__every_s=HOUR), later_in_the_slot, slot) == ""


def test_a_day_of_ticks_runs_each_slot_exactly_once() -> None:
    rules = policy(schedule__every_s=HOUR)
    start = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    last_slot = schedule_slot(start, HOUR) - 1
    ran: list[int] = []
    for minute in range(0, 24 * 60, 7):
        now = start + dt.timedelta(minutes=minute)
        if schedule_due(rules, now, last_slot):
            last_slot = schedule_slot(now, HOUR)
            ran.append(last_slot)
    first = schedule_slot(start, HOUR)
    assert ran == list(range(first, first + 24))


def test_after_downtime_one_catch_up_run_is_owed_naming_the_missed_slots() -> None:
    rules = policy(schedule__every_s=HOUR)
    slot = schedule_slot(NOW, HOUR)
    last_ran = slot - 50  # down for two days
    due = schedule_due(rules, NOW, last_ran)
    assert due == f"schedule slot {slot} (every 3600 s) (49 missed slots skipped)"
    # Once the catch-up run is recorded for the current slot, nothing else is owed.
    assert schedule_due(rules, NOW, slot) == ""
    assert schedule_due(rules, NOW + dt.timedelta(hours=1), slot) == (
        f"schedule slot {slot + 1} (every 3600 s)"
    )


def test_the_first_scheduled_run_reports_no_missed_slots() -> None:
    slot = schedule_slot(NOW, HOUR)
    assert schedule_due(policy(schedule__every_s=HOUR), NOW, 0) == (
        f"schedule slot {slot} (every 3600 s)"
    )


def test_every_s_zero_turns_the_schedule_off() -> None:
    assert schedule_due(policy(schedule__every_s=0), NOW, 0) == ""
    assert schedule_due(policy(schedule__every_s=0), NOW, 12) == ""


# ---------------------------------------------------------------- triggers: performance


def test_accuracy_below_the_holdout_minus_max_drop_triggers() -> None:
    cause = performance_breach(policy(), False, Performance(1200, 0.80, 0.90))
    assert cause == (
        "accuracy 0.800 on 1,200 labelled predictions (99% bound 0.8), below the holdout's "
        "0.900 by more than 0.050"
    )


def test_accuracy_exactly_at_the_boundary_does_not_trigger() -> None:
    rules = policy(performance__max_drop=0.125)
    assert performance_breach(rules, False, Performance(600, 0.75, 0.875)) == ""
    assert performance_breach(rules, False, Performance(600, 0.7499, 0.875)) != ""
    # Whatever float the subtraction gives, observing exactly that is not a breach.
    holdout = 0.9
    boundary = holdout - policy().performance.max_drop
    assert performance_breach(policy(), False, Performance(600, boundary, holdout)) == ""


def test_the_performance_margin_is_the_one_sided_99_percent_half_width() -> None:
    assert Performance(1600, 0.8, 0.9, spread=0.4).margin == 2.326 * 0.4 / 40.0
    assert Performance(1600, 0.8, 0.9).margin == 0.0
    assert Performance(0, 0.8, 0.9, spread=0.4).margin == math.inf


def test_a_drop_within_sampling_noise_does_not_trigger() -> None:
    # 1,600 rows with accuracy 0.83: the point estimate is past 0.90 - 0.05, but the 99%
    # bound 0.83 + 2.326 * 0.4 / 40 = 0.853 is not.
    noisy = Performance(1600, 0.83, 0.90, spread=0.4)
    assert performance_breach(policy(), False, noisy) == ""
    assert performance_breach(policy(), False, dataclasses.replace(noisy, spread=0.0)) != ""
    # Well past the threshold, the bound is too: 0.80 + 0.023 < 0.85.
    clear = Performance(1600, 0.80, 0.90, spread=0.4)
    assert performance_breach(policy(), False, clear) == (
        "accuracy 0.800 on 1,600 labelled predictions (99% bound 0.8233), below the "
        "holdout's 0.900 by more than 0.050"
    )


def test_accuracy_below_min_accuracy_triggers_without_a_holdout_reference() -> None:
    rules = policy(performance__min_accuracy=0.7)
    cause = performance_breach(rules, False, Performance(600, 0.65, math.nan))
    assert cause == "accuracy 0.650 on 600 labelled predictions (99% bound 0.65), below 0.700"
    assert performance_breach(rules, False, Performance(600, 0.70, math.nan)) == ""
    noisy = Performance(600, 0.69, math.nan, spread=0.46)  # bound 0.734
    assert performance_breach(rules, False, noisy) == ""
    assert performance_breach(policy(), False, Performance(600, 0.10, math.nan)) == ""


def test_too_few_labelled_rows_never_trigger() -> None:
    rules = policy(performance__min_labelled=500, performance__min_accuracy=0.9)
    assert performance_breach(rules, False, Performance(499, 0.0, 0.95)) == ""
    assert performance_breach(rules, False, Performance(500, 0.0, 0.95)) != ""
    # min_labelled 0 still needs one labelled row.
    no_floor = policy(performance__min_labelled=0, performance__min_accuracy=0.9)
    assert performance_breach(no_floor, False, Performance(0, 0.0, 0.95)) == ""
    assert performance_breach(no_floor, True, Performance(0, 100.0, 1.0)) == ""


def test_a_disabled_performance_rule_never_triggers() -> None:
    rules = policy(performance__enabled=False, performance__min_accuracy=0.9)
    assert performance_breach(rules, False, Performance(10_000, 0.0, 0.95)) == ""


def test_regression_mae_above_the_holdout_times_one_plus_max_drop_triggers() -> None:
    rules = policy(performance__max_drop=0.25)
    cause = performance_breach(rules, True, Performance(600, 2.6, 2.0))
    assert cause == (
        "MAE 2.6 on 600 labelled predictions (99% bound 2.6), above the holdout's 2 by more "
        "than 25%"
    )
    assert performance_breach(rules, True, Performance(600, 2.5, 2.0)) == ""  # the boundary
    assert performance_breach(rules, True, Performance(600, 1.0, 2.0)) == ""  # better
    assert performance_breach(rules, True, Performance(600, 9.0, math.nan)) == ""
    # The bound is the lower one for an error: 2.6 - 2.326 * 1.2 / sqrt(600) = 2.486 < 2.5.
    assert performance_breach(rules, True, Performance(600, 2.6, 2.0, spread=1.2)) == ""
    # min_accuracy is a classifier rule: it does not apply to an MAE.
    with_floor = policy(performance__max_drop=0.25, performance__min_accuracy=0.9)
    assert performance_breach(with_floor, True, Performance(600, 0.5, 2.0)) == ""


# ---------------------------------------------------------------- triggers: drift, new data


def alert(
    kind: events_pb2.DriftKind.ValueType,
    severity: events_pb2.Severity.ValueType,
    features: tuple[str, ...] = ("x0", "x1", "x2", "x3"),
) -> events_pb2.DriftAlert:
    return events_pb2.DriftAlert(
        kind=kind,
        model=MODEL,
        version="3",
        severity=severity,
        features=[events_pb2.FeatureScore(feature=name, test="psi") for name in features],
    )


def test_a_drift_alert_of_an_enabled_kind_names_its_top_three_features() -> None:
    cause = drift_cause(
        policy(), alert(events_pb2.DRIFT_KIND_DATA, events_pb2.SEVERITY_WARNING), "3"
    )
    assert cause == "warning data drift alert on v3 (x0, x1, x2)"
    bare = alert(events_pb2.DRIFT_KIND_CONCEPT, events_pb2.SEVERITY_CRITICAL, ())
    assert drift_cause(policy(), bare, "3") == "critical concept drift alert on v3"


def test_drift_kinds_filter_and_empty_kinds_mean_every_kind() -> None:
    prediction = alert(events_pb2.DRIFT_KIND_PREDICTION, events_pb2.SEVERITY_CRITICAL, ("x1",))
    assert drift_cause(policy(), prediction, "3") == ""  # the default: data and concept
    assert drift_cause(policy(drift__kinds=[]), prediction, "3") == (
        "critical prediction drift alert on v3 (x1)"
    )
    only_concept = policy(drift__kinds=[events_pb2.DRIFT_KIND_CONCEPT])
    data = alert(events_pb2.DRIFT_KIND_DATA, events_pb2.SEVERITY_CRITICAL)
    assert drift_cause(only_concept, data, "3") == ""


def test_drift_alerts_below_the_minimum_severity_do_not_trigger() -> None:
    rules = policy(drift__min_severity=events_pb2.SEVERITY_WARNING)
    info = alert(events_pb2.DRIFT_KIND_DATA, events_pb2.SEVERITY_INFO)
    assert drift_cause(rules, info, "3") == ""
    critical = alert(events_pb2.DRIFT_KIND_DATA, events_pb2.SEVERITY_CRITICAL)
    assert drift_cause(rules, critical, "3") == "critical data drift alert on v3 (x0, x1, x2)"
    strict = policy(drift__min_severity=events_pb2.SEVERITY_CRITICAL)
    warning = alert(events_pb2.DRIFT_KIND_DATA, events_pb2.SEVERITY_WARNING)
    assert drift_cause(strict, warning, "3") == ""


def test_an_alerts_open_and_its_severity_raises_ask_for_a_decision_its_other_events_not() -> None:
    opened = alert(events_pb2.DRIFT_KIND_DATA, events_pb2.SEVERITY_WARNING)
    opened.state = events_pb2.ALERT_STATE_OPEN
    assert asks_for_decision(opened)
    assert asks_for_decision(alert(events_pb2.DRIFT_KIND_DATA, events_pb2.SEVERITY_WARNING))
    wider = alert(events_pb2.DRIFT_KIND_DATA, events_pb2.SEVERITY_WARNING)
    wider.state, wider.revision = events_pb2.ALERT_STATE_UPDATED, 1
    wider.previous_severity = events_pb2.SEVERITY_WARNING
    assert not asks_for_decision(wider)  # one more stream: the policy's answer is the same
    raised = alert(events_pb2.DRIFT_KIND_DATA, events_pb2.SEVERITY_CRITICAL)
    raised.state, raised.revision = events_pb2.ALERT_STATE_UPDATED, 2
    raised.previous_severity = events_pb2.SEVERITY_WARNING
    assert asks_for_decision(raised)
    closed = alert(events_pb2.DRIFT_KIND_DATA, events_pb2.SEVERITY_CRITICAL)
    closed.state, closed.revision = events_pb2.ALERT_STATE_CLOSED, 3
    closed.previous_severity = events_pb2.SEVERITY_CRITICAL
    assert not asks_for_decision(closed)


def test_a_disabled_drift_rule_never_triggers() -> None:
    critical = alert(events_pb2.DRIFT_KIND_DATA, events_pb2.SEVERITY_CRITICAL)
    assert drift_cause(policy(drift__enabled=False), critical, "3") == ""


def test_only_drift_alerts_about_the_champion_trigger() -> None:
    critical = alert(events_pb2.DRIFT_KIND_DATA, events_pb2.SEVERITY_CRITICAL)
    assert drift_cause(policy(), critical, "4") == ""  # v3 no longer serves
    assert drift_cause(policy(), critical, "3") == "critical data drift alert on v3 (x0, x1, x2)"


def test_new_data_triggers_from_the_configured_count() -> None:
    rules = policy(new_data__min_new_labelled=1000)
    assert new_data_cause(rules, 999) == ""
    assert new_data_cause(rules, 1000) == "1,000 new labelled predictions (at least 1,000)"
    assert new_data_cause(rules, 12_345) == "12,345 new labelled predictions (at least 1,000)"
    assert new_data_cause(policy(new_data__min_new_labelled=0), 10**9) == ""


# ---------------------------------------------------------------- gate


def other_label(truth: TextArray) -> TextArray:
    flipped: TextArray = np.where(truth == "1", "0", "1").astype(np.str_)
    return flipped


def scored(
    truth: TextArray,
    right: BoolArray,
    rng: np.random.Generator,
    right_probability: tuple[float, float] = (0.6, 0.95),
    wrong_probability: tuple[float, float] = (0.05, 0.45),
) -> Scored:
    """A binary classifier's answers: right where `right`, with the probability it gives
    the true label drawn from the given ranges."""
    labels: TextArray = np.where(right, truth, other_label(truth)).astype(np.str_)
    probability: FloatArray = np.where(
        right,
        rng.uniform(*right_probability, truth.size),
        rng.uniform(*wrong_probability, truth.size),
    )
    return Scored(labels=labels, truth_probability=probability)


def truth_labels(rng: np.random.Generator, rows: int) -> TextArray:
    labels: TextArray = rng.choice(np.asarray(["0", "1"], dtype=np.str_), size=rows)
    return labels


def challenger_right(
    rng: np.random.Generator, champion_right: BoolArray, keep: float, fix: float
) -> BoolArray:
    """Right where the champion is right with probability `keep`, else with `fix`."""
    draws = rng.random(champion_right.size)
    right: BoolArray = np.where(champion_right, draws < keep, draws < fix)
    return right


def check(verdict: Verdict, name: str, segment: str = "") -> GateCheck:
    (found,) = [c for c in verdict.checks if c.name == name and c.segment == segment]
    return found


def test_a_clearly_better_challenger_passes_with_a_small_p() -> None:
    rng = np.random.default_rng(1)
    truth = truth_labels(rng, 1000)
    right_a = rng.random(1000) < 0.75
    right_b = challenger_right(rng, right_a, keep=0.95, fix=0.55)
    verdict = judge(
        False, truth, None, scored(truth, right_a, rng), scored(truth, right_b, rng), RULES
    )
    primary = check(verdict, "primary")
    assert verdict.passed and verdict.reasons == []
    assert [c.name for c in verdict.checks] == ["primary", "secondary"]
    assert (primary.metric, primary.test, primary.rows) == ("accuracy", "mcnemar", 1000)
    assert primary.champion == float(right_a.mean())
    assert primary.challenger == float(right_b.mean())
    assert primary.effect == pytest.approx(float(right_b.mean() - right_a.mean()), abs=1e-12)
    assert 0.07 < primary.effect < 0.13
    assert primary.ci_low > 0.0 and primary.p_value < 1e-6
    assert check(verdict, "secondary").passed


@pytest.mark.parametrize("fix", [0.08, 0.1, 0.3])
def test_the_one_sided_p_is_half_the_exact_two_sided_mcnemar_p(fix: float) -> None:
    rng = np.random.default_rng(2)
    truth = truth_labels(rng, 1000)
    right_a = rng.random(1000) < 0.75
    right_b = challenger_right(rng, right_a, keep=0.97, fix=fix)
    verdict = judge(
        False, truth, None, scored(truth, right_a, rng), scored(truth, right_b, rng), RULES
    )
    primary = check(verdict, "primary")
    b_only = int(np.count_nonzero(right_b & ~right_a))
    a_only = int(np.count_nonzero(right_a & ~right_b))
    assert b_only > a_only
    two_sided = binomtest(b_only, b_only + a_only, 0.5, alternative="two-sided").pvalue
    greater = binomtest(b_only, b_only + a_only, 0.5, alternative="greater").pvalue
    assert primary.p_value == pytest.approx(two_sided / 2.0, rel=1e-9)
    assert primary.p_value == pytest.approx(greater, rel=1e-9)
    assert primary.effect == (b_only - a_only) / 1000
    assert primary.passed == (primary.effect >= RULES.margin and greater < RULES.alpha)


def test_a_better_challenger_without_significance_fails() -> None:
    # 29 rows only the challenger gets right, 20 only the champion: +0.9 points, past a
    # margin of 0.5 point, but p 0.13.
    rng = np.random.default_rng(2)
    truth = truth_labels(rng, 1000)
    right_a = rng.random(1000) < 0.75
    right_b = challenger_right(rng, right_a, keep=0.97, fix=0.08)
    rules = dataclasses.replace(RULES, margin=0.005)
    verdict = judge(
        False, truth, None, scored(truth, right_a, rng), scored(truth, right_b, rng), rules
    )
    primary = check(verdict, "primary")
    assert int(np.count_nonzero(right_b & ~right_a)) == 29
    assert int(np.count_nonzero(right_a & ~right_b)) == 20
    assert primary.effect == 0.009
    assert primary.p_value == pytest.approx(0.12643486508380164, rel=1e-9)
    assert not primary.passed and not verdict.passed


def test_an_identical_challenger_fails() -> None:
    rng = np.random.default_rng(3)
    truth = truth_labels(rng, 1000)
    champion = scored(truth, rng.random(1000) < 0.8, rng)
    verdict = judge(False, truth, None, champion, champion, RULES)
    primary = check(verdict, "primary")
    assert not verdict.passed and not primary.passed
    assert primary.effect == 0.0 and primary.champion == primary.challenger
    assert primary.p_value >= 0.5
    assert verdict.reasons == [primary.detail]
    assert "needs at least +0.0100 with p < 0.05" in primary.detail
    secondary = check(verdict, "secondary")
    assert secondary.passed and secondary.effect == 0.0


def test_a_significant_improvement_below_the_margin_fails_on_a_large_holdout() -> None:
    rows = 40_000  # large enough for +0.5 point to be significant (the bootstrap costs)
    rng = np.random.default_rng(4)
    truth = truth_labels(rng, rows)
    right_a = np.zeros(rows, dtype=bool)
    right_a[:30_000] = True
    right_b = right_a.copy()
    right_b[30_000:31_000] = True  # 1,000 rows only the challenger gets right
    right_b[:800] = False  # 800 rows only the champion gets right
    fixed = (0.8, 0.8), (0.3, 0.3)
    verdict = judge(
        False,
        truth,
        None,
        scored(truth, right_a, rng, *fixed),
        scored(truth, right_b, rng, *fixed),
        RULES,
    )
    primary = check(verdict, "primary")
    assert primary.effect == 0.005
    greater = binomtest(1000, 1800, 0.5, alternative="greater").pvalue
    assert primary.p_value == pytest.approx(greater, rel=1e-9)
    assert primary.p_value < 1e-5  # clearly significant ...
    assert not primary.passed  # ... but half the margin
    assert not verdict.passed and verdict.reasons == [primary.detail]
    assert check(verdict, "secondary").passed


def test_better_accuracy_with_overconfident_mistakes_fails_the_log_loss_check() -> None:
    rng = np.random.default_rng(5)
    truth = truth_labels(rng, 2000)
    right_a = rng.random(2000) < 0.75
    right_b = challenger_right(rng, right_a, keep=0.97, fix=0.55)
    champion = scored(truth, right_a, rng)
    challenger = scored(truth, right_b, rng, (0.99, 0.999), (1e-7, 1e-6))
    verdict = judge(False, truth, None, champion, challenger, RULES)
    primary, secondary = check(verdict, "primary"), check(verdict, "secondary")
    assert primary.passed and primary.effect > 0.05
    assert not secondary.passed
    assert (secondary.metric, secondary.test) == ("log_loss", "paired_bootstrap")
    assert secondary.challenger > 2 * secondary.champion
    assert secondary.ci_high < 0.0  # its loss is higher in every plausible case
    assert not verdict.passed and verdict.reasons == [secondary.detail]
    assert secondary.detail.startswith("log loss ")


def segment_holdout() -> tuple[TextArray, TextArray, Scored, Scored]:
    """Segment a (2,000 rows) much better, b (800) much worse, c (199) worse but too small."""
    rng = np.random.default_rng(6)
    sizes = {"a": 2000, "b": 800, "c": 199}
    segments = np.concatenate([np.full(n, name, dtype=np.str_) for name, n in sizes.items()])
    truth = truth_labels(rng, segments.size)
    right_a = np.concatenate(
        [rng.random(2000) < 0.70, rng.random(800) < 0.85, rng.random(199) < 0.85]
    )
    right_b = np.concatenate(
        [
            challenger_right(rng, right_a[:2000], keep=0.98, fix=0.6),
            challenger_right(rng, right_a[2000:2800], keep=0.8, fix=0.2),
            challenger_right(rng, right_a[2800:], keep=0.5, fix=0.2),
        ]
    )
    return segments, truth, scored(truth, right_a, rng), scored(truth, right_b, rng)


def test_a_challenger_worse_on_one_segment_fails_naming_it() -> None:
    segments, truth, champion, challenger = segment_holdout()
    verdict = judge(False, truth, None, champion, challenger, RULES, segments)
    assert check(verdict, "primary").passed  # better overall
    assert check(verdict, "secondary").passed
    a, b = check(verdict, "segment", "a"), check(verdict, "segment", "b")
    assert a.passed and a.effect > 0.1 and a.rows == 2000
    assert not b.passed and b.effect < -0.1 and b.p_value < RULES.alpha and b.rows == 800
    assert not verdict.passed
    assert verdict.reasons == [b.detail]
    assert verdict.reasons[0].startswith("segment b: ")


def test_segments_below_segment_min_rows_are_not_judged() -> None:
    segments, truth, champion, challenger = segment_holdout()
    verdict = judge(False, truth, None, champion, challenger, RULES, segments)
    assert [c.segment for c in verdict.checks if c.name == "segment"] == ["a", "b"]
    # With the bar at 199 rows, c is judged too (and, clearly worse, also refused).
    lower = dataclasses.replace(RULES, segment_min_rows=199)
    judged = judge(False, truth, None, champion, challenger, lower, segments)
    assert [c.segment for c in judged.checks if c.name == "segment"] == ["a", "b", "c"]
    assert not check(judged, "segment", "c").passed
    # Without b, the small bad segment c alone does not stop the challenger.
    keep = segments != "b"
    assert champion.labels is not None and champion.truth_probability is not None
    assert challenger.labels is not None and challenger.truth_probability is not None
    without_b = judge(
        False,
        truth[keep],
        None,
        Scored(champion.labels[keep], champion.truth_probability[keep]),
        Scored(challenger.labels[keep], challenger.truth_probability[keep]),
        RULES,
        segments[keep],
    )
    assert without_b.passed
    assert [c.segment for c in without_b.checks if c.name == "segment"] == ["a"]


def regression_holdout(scale: float) -> tuple[FloatArray, Scored, Scored]:
    rng = np.random.default_rng(7)
    truth = rng.normal(10.0, 3.0, 1000)
    champion = truth + rng.normal(0.0, 1.0, 1000)
    challenger = truth + rng.normal(0.0, 0.7, 1000)
    return truth * scale, Scored(values=champion * scale), Scored(values=challenger * scale)


def test_a_regressor_with_lower_mae_passes_with_the_effect_relative_to_the_champion() -> None:
    truth, champion, challenger = regression_holdout(1.0)
    assert champion.values is not None and challenger.values is not None
    verdict = judge(True, None, truth, champion, challenger, RULES)
    primary = check(verdict, "primary")
    mae_a = float(np.abs(champion.values - truth).mean())
    mae_b = float(np.abs(challenger.values - truth).mean())
    assert verdict.passed and verdict.reasons == []
    assert (primary.metric, primary.test) == ("mae", "wilcoxon")
    assert primary.champion == pytest.approx(mae_a, rel=1e-12)
    assert primary.challenger == pytest.approx(mae_b, rel=1e-12)
    assert primary.effect == pytest.approx((mae_a - mae_b) / mae_a, rel=1e-9)
    assert 0.2 < primary.effect < 0.4 and primary.p_value < 1e-6
    assert primary.ci_low < primary.effect < primary.ci_high
    secondary = check(verdict, "secondary")
    assert secondary.passed and secondary.metric == "squared_error"


def test_the_regression_effect_does_not_depend_on_the_units() -> None:
    base = judge(True, None, *regression_holdout(1.0), RULES)
    scaled = judge(True, None, *regression_holdout(1000.0), RULES)
    one, thousand = check(base, "primary"), check(scaled, "primary")
    assert thousand.champion == pytest.approx(1000.0 * one.champion, rel=1e-9)
    assert thousand.effect == pytest.approx(one.effect, rel=1e-9)
    assert thousand.p_value == pytest.approx(one.p_value, rel=1e-9)


def test_an_identical_regressor_fails() -> None:
    truth, champion, _ = regression_holdout(1.0)
    verdict = judge(True, None, truth, champion, champion, RULES)
    primary = check(verdict, "primary")
    assert not verdict.passed and verdict.reasons == [primary.detail]
    assert primary.effect == 0.0


# ---------------------------------------------------------------- snapshot


def make_snapshot(target: Column, region: TextArray | None = None) -> Snapshot:
    rows = len(target)
    region = (
        region
        if region is not None
        else np.asarray(["a", "b", "c", "é-ü", "a", "b"][:rows], dtype=np.str_)
    )
    features: dict[str, Column] = {
        "x1": np.asarray([0.5, math.nan, -2.25, 1e300, 0.0, -0.0][:rows], dtype=np.float64),
        "region": region,
        "x0": np.asarray([1.0, 2.0, 3.0, math.nan, math.nan, 7.0][:rows], dtype=np.float64),
    }
    return Snapshot(
        features=Table(features),
        target=target,
        request_ids=np.asarray([f"req-{i}" for i in range(rows)], dtype=np.str_),
        time_us=np.asarray([1.78e15 + 10_000.0 * i for i in range(rows)], dtype=np.float64),
        holdout=split_newest(rows, 0.34),
    )


SNAPSHOT_SCHEMA = Schema(
    (
        Feature("x0", "number", allow_nan=True),
        Feature("region", "category"),
        Feature("x1", "number", allow_nan=True),
    )
)
TEXT_TARGET: TextArray = np.asarray(["1", "0", "0", "1", "1", "0"], dtype=np.str_)
FLOAT_TARGET: FloatArray = np.asarray([1.5, -2.0, math.nan, 0.0, 3e-9, 42.0], dtype=np.float64)


def assert_same(read: Snapshot, written: Snapshot) -> None:
    assert list(read.features.columns) == ["x0", "region", "x1"]  # the schema's order
    for name, column in written.features.columns.items():
        assert read.features.columns[name].dtype.kind == column.dtype.kind
        np.testing.assert_array_equal(read.features.columns[name], column)
    assert read.target.dtype.kind == written.target.dtype.kind
    np.testing.assert_array_equal(read.target, written.target)
    np.testing.assert_array_equal(read.request_ids, written.request_ids)
    np.testing.assert_array_equal(read.time_us, written.time_us)
    np.testing.assert_array_equal(read.holdout, written.holdout)
    assert read.holdout.dtype == np.bool_ and read.rows == written.rows


@pytest.mark.parametrize("target", [TEXT_TARGET, FLOAT_TARGET], ids=["text", "float"])
def test_a_snapshot_round_trips_through_parquet(target: Column) -> None:
    written = make_snapshot(target)
    read = from_parquet(to_parquet(written), SNAPSHOT_SCHEMA)
    assert_same(read, written)
    assert read.holdout.tolist() == [False, False, False, False, True, True]
    assert np.signbit(read.features.columns["x1"][5])  # -0.0 stays -0.0


def test_the_same_snapshot_gives_the_same_bytes() -> None:
    first = to_parquet(make_snapshot(TEXT_TARGET))
    again = to_parquet(make_snapshot(TEXT_TARGET))
    assert first == again and sha256_of(first) == sha256_of(again)
    reordered = make_snapshot(TEXT_TARGET)
    shuffled = Snapshot(
        features=Table(dict(reversed(list(reordered.features.columns.items())))),
        target=reordered.target,
        request_ids=reordered.request_ids,
        time_us=reordered.time_us,
        holdout=reordered.holdout,
    )
    assert to_parquet(shuffled) == first  # the feature order does not matter


def test_a_changed_row_changes_the_bytes() -> None:
    original = to_parquet(make_snapshot(TEXT_TARGET))
    region = np.asarray(["a", "b", "c", "é-ü", "a", "c"], dtype=np.str_)
    assert to_parquet(make_snapshot(TEXT_TARGET, region)) != original
    relabelled = TEXT_TARGET.copy()
    relabelled[0] = "0"
    assert to_parquet(make_snapshot(relabelled)) != original


@pytest.mark.parametrize(
    ("rows", "fraction", "held"),
    [(10, 0.2, 2), (1000, 0.2, 200), (3, 0.05, 1), (1, 0.5, 1), (7, 0.3, 2)],
)
def test_split_newest_holds_out_the_newest_share_and_at_least_one_row(
    rows: int, fraction: float, held: int
) -> None:
    mask = split_newest(rows, fraction)
    assert mask.dtype == np.bool_ and mask.size == rows
    assert mask.tolist() == [False] * (rows - held) + [True] * held


def test_reading_a_snapshot_without_a_schema_feature_fails_naming_it() -> None:
    raw = to_parquet(make_snapshot(TEXT_TARGET))
    schema = Schema((*SNAPSHOT_SCHEMA.features, Feature("tenure", "number")))
    with pytest.raises(FailedPrecondition, match="tenure") as raised:
        from_parquet(raw, schema)
    assert "region" not in raised.value.message
    # A snapshot may hold more than the schema asks for.
    subset = from_parquet(raw, Schema((Feature("region", "category"),)))
    assert list(subset.features.columns) == ["region"]


# ---------------------------------------------------------------- policy


def test_the_default_policy_is_valid() -> None:
    rules = default_policy(MODEL)
    validate_policy(rules)
    assert rules.model == MODEL and rules.enabled
    assert list(rules.rollout.steps_percent) == list(DEFAULT_STEPS_PERCENT)


def set_kinds(rules: retrainer_pb2.TrainingPolicy, kinds: list[int]) -> None:
    del rules.drift.kinds[:]
    rules.drift.kinds.extend(kinds)  # type: ignore[arg-type]


def set_steps(rules: retrainer_pb2.TrainingPolicy, steps: list[int]) -> None:
    del rules.rollout.steps_percent[:]
    rules.rollout.steps_percent.extend(steps)


INVALID: list[tuple[str, Callable[[retrainer_pb2.TrainingPolicy], None]]] = [
    ("policy.training.holdout_fraction", lambda p: setattr(p.training, "holdout_fraction", 0.9)),
    ("policy.gate.alpha", lambda p: setattr(p.gate, "alpha", 0.0)),
    ("policy.rollout.steps_percent", lambda p: set_steps(p, [1, 50, 25, 100])),
    ("policy.rollout.steps_percent", lambda p: set_steps(p, [0, 50, 100])),
    ("policy.rollout.steps_percent", lambda p: set_steps(p, [50, 150])),
    ("policy.drift.kinds[1]", lambda p: set_kinds(p, [events_pb2.DRIFT_KIND_DATA, 7])),
    ("policy.drift.kinds[0]", lambda p: set_kinds(p, [events_pb2.DRIFT_KIND_UNSPECIFIED])),
    ("policy.model", lambda p: setattr(p, "model", "bad name!")),
    ("policy.model", lambda p: setattr(p, "model", "")),
    ("policy.training.max_rows", lambda p: setattr(p.training, "max_rows", 10)),
    ("policy.performance.max_drop", lambda p: setattr(p.performance, "max_drop", math.nan)),
    ("policy.gate.margin", lambda p: setattr(p.gate, "margin", -0.01)),
]


@pytest.mark.parametrize(("field", "change"), INVALID, ids=[f for f, _ in INVALID])
def test_each_invalid_field_is_named(
    field: str, change: Callable[[retrainer_pb2.TrainingPolicy], None]
) -> None:
    rules = default_policy(MODEL)
    change(rules)
    with pytest.raises(InvalidArgument) as raised:
        validate_policy(rules)
    assert raised.value.field == field


def test_the_bounds_themselves_are_valid() -> None:
    rules = default_policy(MODEL)
    rules.training.holdout_fraction = 0.5
    rules.training.max_rows = 100
    rules.gate.alpha = 0.5
    set_steps(rules, [100])
    set_kinds(rules, [])
    validate_policy(rules)


# ---------------------------------------------------------------- jobs


@dataclasses.dataclass(frozen=True)
class Champion:
    spec: VersionSpec
    root: Path


def spec_of(record: VersionRecord) -> VersionSpec:
    """As the pipeline's `_context` builds it from the registry's record."""
    return VersionSpec(
        model=record.model,
        version=record.version,
        flavor=record.flavor,
        artifact_sha256=record.artifact_sha256,
        schema=record.schema,
        output_kind=record.output_kind,
        entry_point=record.entry_point,
    )


@pytest.fixture(scope="module")
def champion(tmp_path_factory: pytest.TempPathFactory) -> Champion:
    root = tmp_path_factory.mktemp("artifacts")
    trained = train_linear(population(1, 3000), TrainingSpec(target="churned", seed=1))
    record = VersionRecord(
        model=MODEL,
        version="1",
        created=dt.datetime.now(dt.UTC),
        flavor="linear",
        artifact_sha256=LocalArtifactStore(root).put(trained.artifact),
        schema=trained.model.schema,
        output_kind=trained.model.output_kind,
        hyperparameters={"target": "churned"},
    )
    return Champion(spec_of(record), root)


def traffic(seed: int, rows: int, flip: bool) -> Snapshot:
    """Labelled traffic as the pipeline extracts it: labels as text, newest 20% held out."""
    data = population(seed, rows, flip_regions=REGIONS if flip else ())
    churned = data.columns["churned"]
    labels: TextArray = np.where(churned == 1.0, "1", "0").astype(np.str_)
    return Snapshot(
        features=Table({name: data.columns[name] for name in ("x0", "x1", "x2", "region")}),
        target=labels,
        request_ids=np.asarray([f"r-{i}" for i in range(rows)], dtype=np.str_),
        time_us=1.78e15 + 10_000.0 * np.arange(rows, dtype=np.float64),
        holdout=split_newest(rows, 0.2),
    )


def run_job(champion: Champion, snapshot: Snapshot, seed: int) -> TrainResult:
    return train_and_score(
        TrainJob(
            snapshot=snapshot,
            target="churned",
            champion=champion.spec,
            artifacts_root=champion.root,
            l2=1.0,
            seed=seed,
        )
    )


def test_train_and_score_is_deterministic_to_the_byte(champion: Champion) -> None:
    snapshot = traffic(2, 2000, flip=True)
    first = run_job(champion, snapshot, seed=5)
    again = run_job(champion, from_parquet(to_parquet(snapshot), champion.spec.schema), seed=5)
    assert first.artifact == again.artifact
    assert first.metrics == again.metrics
    np.testing.assert_array_equal(first.challenger.labels, again.challenger.labels)
    np.testing.assert_array_equal(first.champion.labels, again.champion.labels)
    assert (first.flavor, first.training_rows, first.holdout_rows) == ("linear", 1600, 400)


def test_champion_and_challenger_are_scored_on_the_same_holdout_rows(
    champion: Champion,
) -> None:
    snapshot = traffic(3, 1500, flip=False)
    result = run_job(champion, snapshot, seed=0)
    held = int(snapshot.holdout.sum())
    assert held == 300 == result.holdout_rows
    for scores in (result.champion, result.challenger):
        assert scores.labels is not None and scores.truth_probability is not None
        assert scores.labels.shape == scores.truth_probability.shape == (held,)
        assert set(scores.labels.tolist()) <= {"0", "1"}
        assert np.all((scores.truth_probability >= 0.0) & (scores.truth_probability <= 1.0))
    truth = snapshot.target[snapshot.holdout]
    for scores, metrics in (
        (result.champion, result.champion_metrics),
        (result.challenger, result.metrics),
    ):
        assert scores.labels is not None
        assert metrics["accuracy"] == float((scores.labels == truth).mean())
    assert result.schema.names == champion.spec.schema.names


def test_on_a_flipped_relation_the_challenger_is_clearly_better(champion: Champion) -> None:
    snapshot = traffic(4, 2000, flip=True)
    result = run_job(champion, snapshot, seed=0)
    assert result.metrics["accuracy"] > result.champion_metrics["accuracy"] + 0.3
    assert result.champion_metrics["accuracy"] < 0.35
    truth = snapshot.target[snapshot.holdout].astype(np.str_)
    verdict = judge(False, truth, None, result.champion, result.challenger, RULES)
    assert verdict.passed, verdict.reasons
