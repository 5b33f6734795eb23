"""When to retrain: the four automatic triggers and the rules every trigger passes.

Pure: the controller gathers the facts (the clock, the policy, what runs, the champion's
labelled performance, a drift alert) and these functions decide, with the reason that is
recorded whether the answer is yes or no.

- schedule: every `every_s` seconds aligned to the epoch, so slot = floor(t / every_s).
  A slot runs once; the last slot that ran is kept, so after downtime the current slot is
  the only one owed (one catch-up run, never a burst for every missed slot).
- performance: the champion's labelled predictions of the recent window against its
  holdout. Classifiers: accuracy below holdout - max_drop, or below min_accuracy.
  Regression: MAE above holdout * (1 + max_drop). Only with at least min_labelled rows,
  and only when the breach is beyond sampling noise: the one-sided 99% confidence bound
  of the observed metric (observed +- 2.326 standard errors of the per-row mean) must be
  past the threshold too. A model whose true accuracy sits at its holdout's shows a
  window 3 standard errors low about once in 700 checks; checked every 30 s, a
  point-estimate rule would retrain a healthy model several times a day.
- drift: an alert of an enabled kind with at least the minimum severity.
- new data: at least min_new_labelled labelled predictions since the last training
  snapshot ended (the champion's, or a later run's, passed or refused).
- every automatic trigger then passes the gates: the policy is on; no run of the model
  is in progress (the trigger is recorded as skipped, not lost), nor the rollout a run
  requested (a second challenger would race the first through the gateway); the cooldown
  since the last run started has passed. A manual trigger skips the policy switch and
  the cooldown, never the one-at-a-time rules.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import TypeAlias

from driftloop.v1 import events_pb2, retrainer_pb2

Trigger: TypeAlias = retrainer_pb2.RetrainTrigger.ValueType
MANUAL = retrainer_pb2.RETRAIN_TRIGGER_MANUAL
SCHEDULE = retrainer_pb2.RETRAIN_TRIGGER_SCHEDULE
PERFORMANCE = retrainer_pb2.RETRAIN_TRIGGER_PERFORMANCE
DRIFT = retrainer_pb2.RETRAIN_TRIGGER_DRIFT
DATA_VOLUME = retrainer_pb2.RETRAIN_TRIGGER_DATA_VOLUME
TRIGGER_NAMES = {
    MANUAL: "manual",
    SCHEDULE: "schedule",
    PERFORMANCE: "performance",
    DRIFT: "drift",
    DATA_VOLUME: "new data",
}


@dataclass(frozen=True)
class Decision:
    triggered: bool
    reason: str


@dataclass(frozen=True)
class ModelActivity:
    """What the controller knows about a model's runs."""

    running_run: str = ""
    last_started: dt.datetime | None = None
    # "v7 (run r1)": a rollout a run requested whose outcome is not known yet.
    rolling_out: str = ""


def admit(
    policy: retrainer_pb2.TrainingPolicy,
    trigger: Trigger,
    activity: ModelActivity,
    now: dt.datetime,
    cause: str,
) -> Decision:
    """Whether a trigger whose condition holds (`cause` says which) starts a run now."""
    if trigger != MANUAL and not policy.enabled:
        return Decision(False, f"{cause}; automatic retraining is off for {policy.model}")
    if activity.running_run:
        return Decision(False, f"{cause}; run {activity.running_run} is in progress")
    if activity.rolling_out:
        return Decision(False, f"{cause}; the rollout of {activity.rolling_out} is in progress")
    if trigger != MANUAL and activity.last_started is not None and policy.cooldown_s:
        ready = activity.last_started + dt.timedelta(seconds=policy.cooldown_s)
        if now < ready:
            wait = (ready - now).total_seconds()
            return Decision(False, f"{cause}; in cooldown for another {wait:.0f} s")
    return Decision(True, cause)


def schedule_slot(now: dt.datetime, every_s: int) -> int:
    """The schedule slot `now` falls in (slots of every_s seconds since the epoch)."""
    return math.floor(now.timestamp() / every_s)


def schedule_due(policy: retrainer_pb2.TrainingPolicy, now: dt.datetime, last_slot: int) -> str:
    """The cause when a scheduled run is owed, else ""."""
    every = policy.schedule.every_s
    if not every:
        return ""
    slot = schedule_slot(now, every)
    if slot <= last_slot:
        return ""
    missed = (
        f" ({slot - last_slot - 1} missed slots skipped)"
        if last_slot and slot - last_slot > 1
        else ""
    )
    return f"schedule slot {slot} (every {every} s){missed}"


@dataclass(frozen=True)
class Performance:
    """The champion's recent labelled performance and its holdout reference."""

    labelled: int
    observed: float  # accuracy (classifiers) or MAE (regression)
    holdout: float  # the same metric on the holdout, NaN when unknown
    spread: float = 0.0  # standard deviation of the per-row metric (correct, |error|)

    @property
    def margin(self) -> float:
        """Half the one-sided 99% confidence interval of the observed metric."""
        return Z_99 * self.spread / math.sqrt(self.labelled) if self.labelled else math.inf


Z_99 = 2.326


def performance_breach(
    policy: retrainer_pb2.TrainingPolicy, regression: bool, performance: Performance
) -> str:
    """The cause when the champion's labelled performance calls for a retrain, else ""."""
    rule = policy.performance
    if not rule.enabled or performance.labelled < max(rule.min_labelled, 1):
        return ""
    seen = f"on {performance.labelled:,} labelled predictions (99% bound {{bound:.4g}})"
    if regression:
        bound = performance.observed - performance.margin
        limit = performance.holdout * (1.0 + rule.max_drop)
        if math.isfinite(performance.holdout) and bound > limit:
            return (
                f"MAE {performance.observed:.4g} {seen.format(bound=bound)}, above the "
                f"holdout's {performance.holdout:.4g} by more than {rule.max_drop:.0%}"
            )
        return ""
    bound = performance.observed + performance.margin
    if rule.min_accuracy and bound < rule.min_accuracy:
        return (
            f"accuracy {performance.observed:.3f} {seen.format(bound=bound)}, below "
            f"{rule.min_accuracy:.3f}"
        )
    # The tolerance keeps 0.8 - 0.1 (0.7000000000000001) from calling 0.7 a breach.
    if math.isfinite(performance.holdout) and bound < performance.holdout - rule.max_drop - 1e-9:
        return (
            f"accuracy {performance.observed:.3f} {seen.format(bound=bound)}, below the "
            f"holdout's {performance.holdout:.3f} by more than {rule.max_drop:.3f}"
        )
    return ""


def asks_for_decision(alert: events_pb2.DriftAlert) -> bool:
    """Whether an event of a drift alert's life calls for a decision: its open, and an
    update that raised its severity (a policy's minimum severity may now be met). An update
    that only named another stream says nothing new to the policy (same model, version,
    kind and severity), and a close asks for nothing."""
    if alert.state == events_pb2.ALERT_STATE_CLOSED:
        return False
    return alert.revision == 0 or alert.severity > alert.previous_severity


def drift_cause(
    policy: retrainer_pb2.TrainingPolicy, alert: events_pb2.DriftAlert, champion: str
) -> str:
    """The cause when a drift alert calls for a retrain, else "". Only alerts about the
    champion count: an alert about a version that no longer serves says nothing about
    the model in production."""
    rule = policy.drift
    if not rule.enabled or alert.version != champion:
        return ""
    if rule.kinds and alert.kind not in rule.kinds:
        return ""
    if alert.severity < rule.min_severity:
        return ""
    kind = events_pb2.DriftKind.Name(alert.kind).removeprefix("DRIFT_KIND_").lower()
    severity = events_pb2.Severity.Name(alert.severity).removeprefix("SEVERITY_").lower()
    features = ", ".join(score.feature for score in alert.features[:3])
    return f"{severity} {kind} drift alert on v{alert.version}" + (
        f" ({features})" if features else ""
    )


def new_data_cause(policy: retrainer_pb2.TrainingPolicy, new_labelled: int) -> str:
    """The cause when enough new labelled data arrived, else ""."""
    needed = policy.new_data.min_new_labelled
    if not needed or new_labelled < needed:
        return ""
    return f"{new_labelled:,} new labelled predictions (at least {needed:,})"
