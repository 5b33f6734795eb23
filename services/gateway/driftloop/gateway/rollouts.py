"""Rollouts: set policies, start blue-green and canary rollouts, promote, roll back, and
the controller that advances them.

Every change is a new revision of the model's policy, published to the routing topic and
applied here at once (the next request on this replica sees it; other replicas see it
when they read the topic). Only the replica holding the controller lease advances
rollouts on its own (`tick`); admin calls work on any replica.

A canary step passes when the local analysis (this replica's traffic) finds nothing wrong
and the step has its minimum requests and duration, and the drift service (when
configured) fails nothing. The drift service's sequential analysis may also report that the
labelled evidence suffices (the candidate's quality is non-inferior with confidence): then
a step that has its minimum requests moves on before its minimum duration. The last step
also waits for the plan's `min_labelled_before_promotion` labelled candidate rows. Without
a drift service there is no labelled quality check, and every event of the canary says so.

Shadow first: a canary may start with a shadow gate instead. The candidate is mirrored
(every request, as a shadow version) and no live traffic goes to it until the shadow
service has compared `min_compared` requests (`min_labelled` of them labelled); then the
canary starts, unless the comparison found the candidate significantly worse, which ends
the rollout as rolled back. The evidence that starts a canary is thus the candidate's
answers to the very requests live answered, at no risk to a user.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from driftloop.gateway import metrics
from driftloop.gateway.canary import (
    QualityCheck,
    QualityOpinion,
    TrafficAnalysis,
    Verdict,
    analyse,
)
from driftloop.gateway.champions import ServedPolicies, no_policy
from driftloop.gateway.policies import (
    DEFAULT_STEPS,
    PolicyBook,
    now_stamp,
    rollout_candidate,
    validate,
    versions_named,
)
from driftloop.kit.errors import (
    DriftloopError,
    ErrorCode,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from driftloop.kit.names import check_version
from driftloop.kit.times import stamp
from driftloop.v1 import events_pb2

log = logging.getLogger(__name__)

NO_QUALITY = "no labelled quality check: the drift service is not configured"
EARLY = "advanced early on sufficient labelled evidence"


class PolicyPublisher(Protocol):
    async def publish(self, policy: events_pb2.RoutingPolicy) -> None: ...


class EventSink(Protocol):
    async def publish(self, event: events_pb2.ModelEvent) -> None: ...


class Champions(Protocol):
    """The registry's champion alias."""

    async def current(self, model: str) -> str: ...

    async def move(self, model: str, version: str, expected: str, reason: str) -> None: ...


class Loader(Protocol):
    """Loads a version on the inference endpoints (the health check of a version before
    any traffic goes to it). Raises FailedPrecondition when the version cannot serve (it
    does not exist, its artifact fails to load), Unavailable when that cannot be told now."""

    async def load(self, model: str, version: str) -> None:
        """Loaded and ready on every endpoint."""
        ...

    async def check(self, model: str, version: str) -> None:
        """Loaded and ready on the endpoints that answer (at least one)."""
        ...


@dataclass(frozen=True)
class ShadowEvidence:
    """What the shadow service's comparison says about a shadowed candidate."""

    compared: int
    labelled: int
    worse: bool
    summary: str


class ShadowCheck(Protocol):
    async def evidence(self, model: str, version: str, since: dt.datetime) -> ShadowEvidence | None:
        """The comparison since `since`; None when it cannot be had now."""
        ...


@dataclass(frozen=True)
class RolloutStart:
    """A rollout asked for: `candidate_version` of `model` by `strategy`. Canary: `steps`
    (empty: the default plan), and shadow first when `shadow_min_compared` > 0 (mirrored
    until the shadow service compared that many requests, `shadow_min_labelled` of them
    labelled). Blue-green: `hold_s`, how long the previous version stays loaded (0: the
    configured default)."""

    model: str
    candidate_version: str
    strategy: Literal["canary", "blue_green"]
    steps: tuple[events_pb2.CanaryStep, ...] = ()
    hold_s: int = 0
    reason: str = ""
    shadow_min_compared: int = 0
    shadow_min_labelled: int = 0


class Rollouts:
    def __init__(
        self,
        book: PolicyBook,
        publisher: PolicyPublisher,
        events: EventSink,
        champions: Champions,
        loader: Loader,
        analysis: TrafficAnalysis,
        *,
        defaults: events_pb2.CanaryPlan,
        hold_default_s: int = 300,
        quality: QualityCheck | None = None,
        shadow: ShadowCheck | None = None,
        served: ServedPolicies | None = None,
    ) -> None:
        self._book = book
        self._served = served
        self._publisher = publisher
        self._events = events
        self._champions = champions
        self._loader = loader
        self._analysis = analysis
        self._defaults = defaults
        self._hold_default_s = hold_default_s
        self._quality = quality
        self._shadow = shadow
        self._step_clock: dict[str, float] = {}
        self._held: set[tuple[str, str]] = set()

    @property
    def has_quality_check(self) -> bool:
        return self._quality is not None

    def _noted(self, reason: str) -> str:
        """A canary event's reason, saying so when no labelled quality check runs."""
        if self._quality is not None:
            return reason
        return f"{reason}; {NO_QUALITY}" if reason else NO_QUALITY

    def policy(self, model: str) -> events_pb2.RoutingPolicy:
        """The written policy (a rollout always has one)."""
        policy = self._book.get(model)
        if policy is None:
            raise NotFound(
                f"model {model!r} has no routing policy written, so no rollout: start one "
                f"with `driftloop routing rollout --model {model} --candidate N`"
            )
        return policy

    async def served(self, model: str) -> events_pb2.RoutingPolicy:
        """The policy the model is served by: the written one, else the default (its
        champion, revision 0) when this controller has one."""
        if self._served is None:
            return self.policy(model)
        policy = await self._served.policy(model)
        if policy is None:
            raise NotFound(no_policy(model))
        return policy

    async def set_policy(
        self, policy: events_pb2.RoutingPolicy, expected_revision: int, actor: str
    ) -> events_pb2.RoutingPolicy:
        current = self._book.get(policy.model)
        current_revision = current.revision if current else 0
        if expected_revision != current_revision:
            raise FailedPrecondition(
                f"the policy of {policy.model!r} is at revision {current_revision}, not "
                f"{expected_revision}; read it again and retry (`driftloop routing show --model "
                f"{policy.model}`)"
            )
        new = events_pb2.RoutingPolicy()
        new.CopyFrom(policy)
        new.salt = new.salt or new.model
        now_stamp(new, actor)  # the server's to set, whatever the caller sent
        validate(new)
        await self._check_versions(new, current)
        return await self._commit(new, current_revision, actor)

    async def _check_versions(
        self, policy: events_pb2.RoutingPolicy, current: events_pb2.RoutingPolicy | None
    ) -> None:
        """Every version the policy names serves (loaded and healthy on inference) before the
        policy is published: one typo must not take a model off the air."""
        serving = {version for _, version in versions_named(current)} if current else set()
        checked: set[str] = set()
        for field, version in versions_named(policy):
            if version in serving or version in checked:
                continue
            try:
                await self._loader.check(policy.model, version)
            except DriftloopError as error:
                if error.code in (ErrorCode.UNAVAILABLE, ErrorCode.DEADLINE_EXCEEDED):
                    raise Unavailable(
                        f"{field}: cannot check that {policy.model} v{version} serves now "
                        f"({error.message}); the policy was not changed, retry"
                    ) from None
                raise FailedPrecondition(
                    f"{field}: {policy.model} v{version} cannot serve ({error.message}); "
                    "the policy was not changed"
                ) from None
            checked.add(version)

    async def start(self, request: RolloutStart, actor: str) -> events_pb2.RoutingPolicy:
        policy = events_pb2.RoutingPolicy()
        policy.CopyFrom(await self.served(request.model))  # a rollout may start from the default
        candidate = check_version("candidate_version", request.candidate_version)
        if candidate == policy.stable_version:
            raise InvalidArgument("candidate_version", f"version {candidate} is already stable")
        if rollout_candidate(policy):
            raise FailedPrecondition(
                f"{request.model} already has a rollout; promote or roll it back first "
                f"(`driftloop routing promote|rollback --model {request.model}`)"
            )
        shadow_first = request.shadow_min_compared > 0
        if shadow_first and request.strategy != "canary":
            raise InvalidArgument("shadow_first", "only a canary can start shadow first")
        if shadow_first and self._shadow is None:
            raise FailedPrecondition(
                "shadow first needs the shadow service: set DRIFTLOOP_GATEWAY_SHADOW_TARGET"
            )
        await self._loader.load(request.model, candidate)  # loaded and healthy, or it raises
        now = dt.datetime.now(dt.UTC)
        reason = request.reason
        if request.strategy == "blue_green":
            hold = request.hold_s or self._hold_default_s  # 0: the configured default
            policy.blue_green.CopyFrom(
                events_pb2.BlueGreen(
                    active_version=candidate,
                    switched=stamp(now),
                    hold_until=stamp(now + dt.timedelta(seconds=hold)),
                )
            )
        else:
            plan = events_pb2.CanaryPlan()
            plan.CopyFrom(self._defaults)
            plan.candidate_version = candidate
            if request.steps:
                del plan.steps[:]
                plan.steps.extend(request.steps)
            plan.current_step = 0
            plan.step_started.CopyFrom(stamp(now))
            plan.started.CopyFrom(stamp(now))
            if shadow_first:
                _open_gate(
                    policy, plan, request.shadow_min_compared, request.shadow_min_labelled, now
                )
                reason = (
                    f"{reason}; shadow first: v{candidate} is mirrored until "
                    f"{request.shadow_min_compared} requests are compared "
                    f"({request.shadow_min_labelled} labelled)"
                ).lstrip("; ")
            else:
                policy.canary.CopyFrom(plan)
                self._step_clock[request.model] = time.monotonic()
            self._held.discard((request.model, candidate))
            if self._quality is None:
                log.warning("canary of %s v%s: %s", request.model, candidate, NO_QUALITY)
                reason = self._noted(reason)
        committed = await self._commit(policy, policy.revision, actor)
        await self._announce(
            events_pb2.MODEL_EVENT_KIND_ROLLOUT_STARTED, committed, candidate, reason, actor
        )
        return committed

    async def promote(self, model: str, reason: str, actor: str) -> events_pb2.RoutingPolicy:
        policy = self._copy(model)
        if policy.shadow_gate.candidate_version:
            raise FailedPrecondition(
                f"{model} v{policy.shadow_gate.candidate_version} is still in its shadow phase: "
                f"wait for the canary, or roll it back (`driftloop routing rollback --model "
                f"{model}`)"
            )
        candidate = policy.canary.candidate_version or policy.blue_green.active_version
        if not candidate:
            raise FailedPrecondition(
                f"{model} has no rollout to promote; start one with `driftloop routing rollout "
                f"--model {model} --candidate N`"
            )
        champion = await self._champions.current(model)
        await self._champions.move(model, candidate, champion, reason or "promoted by the gateway")
        previous = policy.stable_version
        policy.stable_version = candidate
        policy.ClearField("canary")
        policy.ClearField("blue_green")
        committed = await self._commit(policy, policy.revision, actor)
        metrics.ROLLOUTS.labels(model, "promoted").inc()
        metrics.ROLLOUT_STEP.labels(model).set(-1)
        await self._announce(
            events_pb2.MODEL_EVENT_KIND_PROMOTED, committed, candidate, reason, actor, previous
        )
        return committed

    async def rollback(self, model: str, reason: str, actor: str) -> events_pb2.RoutingPolicy:
        policy = self._copy(model)
        candidate = rollout_candidate(policy)
        if not candidate:
            raise FailedPrecondition(
                f"{model} has no rollout to roll back (`driftloop routing show --model {model}`)"
            )
        _close_gate(policy)
        policy.ClearField("canary")
        policy.ClearField("blue_green")
        committed = await self._commit(policy, policy.revision, actor)
        metrics.ROLLOUTS.labels(model, "rolled_back").inc()
        metrics.ROLLOUT_STEP.labels(model).set(-1)
        log.warning("rolled back %s v%s: %s", model, candidate, reason)
        await self._announce(
            events_pb2.MODEL_EVENT_KIND_ROLLED_BACK, committed, candidate, reason, actor
        )
        return committed

    async def tick(self) -> None:
        """One controller round over the running rollouts (the lease holder only)."""
        for model in self._book.rolling_out():
            policy = self._book.get(model)
            if policy is None:
                continue
            try:
                if policy.shadow_gate.candidate_version:
                    await self._advance_shadow_gate(policy)
                elif policy.canary.candidate_version:
                    await self._advance_canary(policy)
                elif policy.blue_green.active_version:
                    hold_until = policy.blue_green.hold_until.ToDatetime(tzinfo=dt.UTC)
                    if dt.datetime.now(dt.UTC) >= hold_until:
                        await self.promote(model, "blue-green hold period passed", "controller")
            except Exception:
                log.exception("advancing the rollout of %s failed; retrying next round", model)

    async def _advance_canary(self, policy: events_pb2.RoutingPolicy) -> None:
        plan = policy.canary
        model = policy.model
        started = self._step_clock.setdefault(model, time.monotonic())
        elapsed = time.monotonic() - started
        stable = self._analysis.stats(model, policy.stable_version, started)
        candidate = self._analysis.stats(model, plan.candidate_version, started)
        result = analyse(plan, stable, candidate, elapsed)
        metrics.ROLLOUT_STEP.labels(model).set(plan.current_step)
        reasons = list(result.reasons)
        opinion: QualityOpinion | None = None
        if result.verdict != Verdict.FAIL and self._quality is not None:
            opinion = await self._quality.opinion(
                model,
                policy.stable_version,
                plan.candidate_version,
                _canary_start(plan, elapsed),
                plan,
            )
            reasons += opinion.failures
        if reasons:
            self._step_clock.pop(model, None)
            await self.rollback(
                model, self._noted("canary analysis failed: " + "; ".join(reasons)), "controller"
            )
            return
        step = plan.steps[plan.current_step]
        notes = []
        if result.verdict == Verdict.WAIT:
            # With the step's minimum requests met, WAIT is waiting for its minimum duration,
            # which sufficient labelled evidence cuts short.
            if (
                opinion is None
                or not opinion.evidence_sufficient
                or candidate.requests < step.min_requests
            ):
                return
            notes.append(
                f"{EARLY} (candidate - stable quality above "
                f"{opinion.quality_difference_low:.4f} with confidence, on "
                f"{opinion.candidate_labelled}/{opinion.stable_labelled} labelled rows)"
            )
        if plan.current_step + 1 >= len(plan.steps):
            needed = plan.min_labelled_before_promotion
            labelled = opinion.candidate_labelled if opinion is not None else 0
            if labelled < needed:
                self._hold(model, plan.candidate_version, needed, labelled)
                return
            if needed:
                notes.append(f"{labelled} labelled candidate rows (at least {needed} required)")
            self._step_clock.pop(model, None)
            await self.promote(
                model,
                self._noted("; ".join(["canary passed every step", *notes])),
                "controller",
            )
            return
        updated = self._copy(model)
        updated.canary.current_step += 1
        updated.canary.step_started.CopyFrom(stamp(dt.datetime.now(dt.UTC)))
        committed = await self._commit(updated, updated.revision, "controller")
        self._step_clock[model] = time.monotonic()
        metrics.ROLLOUT_STEP.labels(model).set(committed.canary.current_step)
        weight = committed.canary.steps[committed.canary.current_step].weight_bp
        reason = (
            f"step {committed.canary.current_step + 1}/{len(plan.steps)}: {weight / 100:g}% "
            f"(after {candidate.requests} candidate requests, error rate "
            f"{candidate.error_rate:.2%}, p99 {candidate.p99_ms:.1f} ms, "
            f"output distance {result.output_distance:.3f})"
        )
        await self._announce(
            events_pb2.MODEL_EVENT_KIND_ROLLOUT_STEPPED,
            committed,
            plan.candidate_version,
            self._noted("; ".join([reason, *notes])),
            "controller",
        )

    async def _advance_shadow_gate(self, policy: events_pb2.RoutingPolicy) -> None:
        """Shadow first: once the shadow service compared enough requests, start the canary
        (the candidate not significantly worse) or end the rollout (worse)."""
        gate = policy.shadow_gate
        model, candidate = policy.model, gate.candidate_version
        if self._shadow is None:
            return  # a policy written by a replica that had the shadow service
        evidence = await self._shadow.evidence(
            model, candidate, gate.started.ToDatetime(tzinfo=dt.UTC)
        )
        if evidence is None:
            return
        if evidence.compared < gate.min_compared or evidence.labelled < gate.min_labelled:
            return
        updated = self._copy(model)
        plan = events_pb2.CanaryPlan()
        plan.CopyFrom(updated.shadow_gate.canary)
        _close_gate(updated)
        if evidence.worse:
            committed = await self._commit(updated, updated.revision, "controller")
            metrics.ROLLOUTS.labels(model, "rolled_back").inc()
            metrics.ROLLOUT_STEP.labels(model).set(-1)
            reason = f"shadow first: the candidate is worse in the shadow ({evidence.summary})"
            log.warning("rolled back %s v%s: %s", model, candidate, reason)
            await self._announce(
                events_pb2.MODEL_EVENT_KIND_ROLLED_BACK, committed, candidate, reason, "controller"
            )
            return
        now = stamp(dt.datetime.now(dt.UTC))
        plan.started.CopyFrom(now)
        plan.step_started.CopyFrom(now)
        updated.canary.CopyFrom(plan)
        committed = await self._commit(updated, updated.revision, "controller")
        self._step_clock[model] = time.monotonic()
        weight = plan.steps[0].weight_bp / 100
        await self._announce(
            events_pb2.MODEL_EVENT_KIND_ROLLOUT_STEPPED,
            committed,
            candidate,
            self._noted(f"shadow first passed ({evidence.summary}); canary at {weight:g}%"),
            "controller",
        )

    def _hold(self, model: str, candidate: str, needed: int, labelled: int) -> None:
        """The last step waits for labelled rows (said once per rollout, in the log)."""
        if (model, candidate) in self._held:
            return
        self._held.add((model, candidate))
        source = (
            f"the drift service counts {labelled}"
            if self._quality is not None
            else "no drift service is configured to count them"
        )
        log.warning(
            "%s v%s passed its last step but waits for %d labelled candidate rows before "
            "promotion (%s)",
            model,
            candidate,
            needed,
            source,
        )

    def _copy(self, model: str) -> events_pb2.RoutingPolicy:
        policy = events_pb2.RoutingPolicy()
        policy.CopyFrom(self.policy(model))
        return policy

    async def _commit(
        self, policy: events_pb2.RoutingPolicy, base_revision: int, actor: str
    ) -> events_pb2.RoutingPolicy:
        policy.revision = base_revision + 1
        now_stamp(policy, actor)
        validate(policy)
        await self._publisher.publish(policy)
        self._book.apply(policy)
        return policy

    async def _announce(
        self,
        kind: events_pb2.ModelEventKind.ValueType,
        policy: events_pb2.RoutingPolicy,
        version: str,
        reason: str,
        actor: str,
        previous: str = "",
    ) -> None:
        event = events_pb2.ModelEvent(
            kind=kind,
            model=policy.model,
            version=version,
            previous_version=previous or policy.stable_version,
            reason=reason,
            actor=actor,
            time=stamp(dt.datetime.now(dt.UTC)),
        )
        await self._events.publish(event)


def _open_gate(
    policy: events_pb2.RoutingPolicy,
    plan: events_pb2.CanaryPlan,
    min_compared: int,
    min_labelled: int,
    now: dt.datetime,
) -> None:
    """Mirror the candidate (every request) until the shadow evidence is in."""
    policy.shadow_gate.CopyFrom(
        events_pb2.ShadowGate(
            candidate_version=plan.candidate_version,
            min_compared=min_compared,
            min_labelled=min_labelled,
            started=stamp(now),
            canary=plan,
            previous_sample_bp=policy.shadow.sample_bp,
        )
    )
    if plan.candidate_version not in policy.shadow.versions:
        policy.shadow.versions.append(plan.candidate_version)
    policy.shadow.sample_bp = 10_000


def _close_gate(policy: events_pb2.RoutingPolicy) -> None:
    """Stop mirroring the gate's candidate; the shadow sampling is as it was."""
    gate = policy.shadow_gate
    if not gate.candidate_version:
        return
    kept = [v for v in policy.shadow.versions if v != gate.candidate_version]
    del policy.shadow.versions[:]
    policy.shadow.versions.extend(kept)
    policy.shadow.sample_bp = gate.previous_sample_bp if kept else 0
    policy.ClearField("shadow_gate")


def _canary_start(plan: events_pb2.CanaryPlan, elapsed_s: float) -> dt.datetime:
    """Where the drift service's analysis starts: the canary's start (its sequential tests
    gather evidence over every step); the step's, for a plan written before `started`."""
    for instant in (plan.started, plan.step_started):
        if instant.seconds or instant.nanos:
            return instant.ToDatetime(tzinfo=dt.UTC)
    return dt.datetime.now(dt.UTC) - dt.timedelta(seconds=elapsed_s)


def default_plan(
    steps: Sequence[int] = DEFAULT_STEPS,
    min_requests: int = 200,
    min_duration_s: int = 60,
    max_error_rate_increase: float = 0.02,
    max_p99_latency_ratio: float = 2.0,
    max_output_distance: float = 0.3,
    min_labelled_before_promotion: int = 0,
) -> events_pb2.CanaryPlan:
    return events_pb2.CanaryPlan(
        steps=[
            events_pb2.CanaryStep(
                weight_bp=weight, min_requests=min_requests, min_duration_s=min_duration_s
            )
            for weight in steps
        ],
        max_error_rate_increase=max_error_rate_increase,
        max_p99_latency_ratio=max_p99_latency_ratio,
        max_output_distance=max_output_distance,
        min_labelled_before_promotion=min_labelled_before_promotion,
    )
