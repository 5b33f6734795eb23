"""Training policies: the defaults every model gets, and the rules a written policy keeps.

The policy is the TrainingPolicy message itself (it is stored as written and served as
is). A model with no written policy runs under `default_policy`, chosen so a registered
model is looked after from the start and nothing unsafe happens unasked: retraining is
triggered by a performance drop on labelled traffic and by drift alerts, at most once an
hour; a challenger must beat the champion significantly on held-out recent traffic, and
even then it only starts a canary, which the gateway's analysis ramps or rolls back.
"""

from __future__ import annotations

import itertools
import math

from driftloop.kit.errors import InvalidArgument
from driftloop.kit.names import check_name
from driftloop.v1 import events_pb2, retrainer_pb2

DEFAULT_STEPS_PERCENT = (1, 5, 25, 50, 100)


def default_policy(model: str) -> retrainer_pb2.TrainingPolicy:
    return retrainer_pb2.TrainingPolicy(
        model=model,
        enabled=True,
        schedule=retrainer_pb2.ScheduleTrigger(every_s=0),
        performance=retrainer_pb2.PerformanceTrigger(
            enabled=True, max_drop=0.05, min_accuracy=0.0, window_s=86_400, min_labelled=500
        ),
        drift=retrainer_pb2.DriftTrigger(
            enabled=True,
            kinds=[events_pb2.DRIFT_KIND_DATA, events_pb2.DRIFT_KIND_CONCEPT],
            min_severity=events_pb2.SEVERITY_WARNING,
        ),
        new_data=retrainer_pb2.DataTrigger(min_new_labelled=0),
        cooldown_s=3600,
        training=retrainer_pb2.TrainingWindow(
            window_s=7 * 86_400, max_rows=200_000, holdout_fraction=0.2, min_rows=500, l2=1.0
        ),
        gate=retrainer_pb2.GatePolicy(
            margin=0.01,
            alpha=0.05,
            secondary_tolerance=0.05,
            segment_feature="",
            segment_tolerance=0.02,
            segment_min_rows=200,
        ),
        rollout=retrainer_pb2.RolloutPlan(
            on_pass=retrainer_pb2.ROLLOUT_ON_PASS_CANARY,
            steps_percent=list(DEFAULT_STEPS_PERCENT),
            min_requests=200,
            min_duration_s=60,
        ),
    )


def _between(field: str, value: float, low: float, high: float) -> None:
    if not (math.isfinite(value) and low <= value <= high):
        raise InvalidArgument(field, f"{value} is not in [{low:g}, {high:g}]")


def validate_policy(policy: retrainer_pb2.TrainingPolicy) -> None:
    """Raise InvalidArgument naming the first wrong field."""
    check_name("policy.model", policy.model, "model name")
    performance = policy.performance
    _between("policy.performance.max_drop", performance.max_drop, 0.0, 1.0)
    _between("policy.performance.min_accuracy", performance.min_accuracy, 0.0, 1.0)
    if performance.enabled and performance.window_s == 0:
        raise InvalidArgument("policy.performance.window_s", "must be positive when enabled")
    for index, kind in enumerate(policy.drift.kinds):
        if kind not in events_pb2.DriftKind.values() or kind == events_pb2.DRIFT_KIND_UNSPECIFIED:
            raise InvalidArgument(f"policy.drift.kinds[{index}]", "data, prediction or concept")
    if policy.drift.min_severity not in events_pb2.Severity.values():
        raise InvalidArgument("policy.drift.min_severity", "info, warning or critical")
    training = policy.training
    if training.window_s == 0:
        raise InvalidArgument("policy.training.window_s", "must be positive")
    if not 100 <= training.max_rows <= 5_000_000:
        raise InvalidArgument("policy.training.max_rows", "must be in 100..5000000")
    _between("policy.training.holdout_fraction", training.holdout_fraction, 0.05, 0.5)
    if training.min_rows < 50:
        raise InvalidArgument("policy.training.min_rows", "at least 50")
    _between("policy.training.l2", training.l2, 0.0, 1e6)
    gate = policy.gate
    _between("policy.gate.margin", gate.margin, 0.0, 1.0)
    _between("policy.gate.alpha", gate.alpha, 1e-6, 0.5)
    _between("policy.gate.secondary_tolerance", gate.secondary_tolerance, 0.0, 10.0)
    _between("policy.gate.segment_tolerance", gate.segment_tolerance, 0.0, 1.0)
    if gate.segment_feature:
        check_name("policy.gate.segment_feature", gate.segment_feature, "feature name")
    if gate.segment_min_rows < 10:
        raise InvalidArgument("policy.gate.segment_min_rows", "at least 10")
    rollout = policy.rollout
    if rollout.on_pass not in (
        retrainer_pb2.ROLLOUT_ON_PASS_NONE,
        retrainer_pb2.ROLLOUT_ON_PASS_CANARY,
        retrainer_pb2.ROLLOUT_ON_PASS_BLUE_GREEN,
        retrainer_pb2.ROLLOUT_ON_PASS_SHADOW_THEN_CANARY,
    ):
        raise InvalidArgument(
            "policy.rollout.on_pass", "NONE, CANARY, BLUE_GREEN or SHADOW_THEN_CANARY"
        )
    shadow_first = rollout.on_pass == retrainer_pb2.ROLLOUT_ON_PASS_SHADOW_THEN_CANARY
    if shadow_first and rollout.shadow_min_compared == 0:
        raise InvalidArgument(
            "policy.rollout.shadow_min_compared", "shadow then canary needs a positive number"
        )
    steps = list(rollout.steps_percent)
    rising = all(a < b for a, b in itertools.pairwise(steps))
    if steps and (not rising or steps[0] == 0 or steps[-1] != 100):
        raise InvalidArgument(
            "policy.rollout.steps_percent", "strictly rising, from above 0, ending at 100"
        )
