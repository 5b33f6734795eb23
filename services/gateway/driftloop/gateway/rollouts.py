"""Rollouts: set policies, start blue-green and canary rollouts, promote, roll back, and
the controller that advances them.

Every change is a new revision of the model's policy, published to the routing topic and
applied here at once (the next request on this replica sees it; other replicas see it
when they read the topic). Only the replica holding the controller lease advances
rollouts on its own (`tick`); admin calls work on any replica.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Sequence
from typing import Protocol

from driftloop.gateway import metrics
from driftloop.gateway.canary import QualityCheck, TrafficAnalysis, Verdict, analyse
from driftloop.gateway.policies import (
    DEFAULT_STEPS,
    PolicyBook,
    now_stamp,
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
from driftloop.v1 import events_pb2, gateway_pb2

log = logging.getLogger(__name__)


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
    ) -> None:
        self._book = book
        self._publisher = publisher
        self._events = events
        self._champions = champions
        self._loader = loader
        self._analysis = analysis
        self._defaults = defaults
        self._hold_default_s = hold_default_s
        self._quality = quality
        self._step_clock: dict[str, float] = {}

    def policy(self, model: str) -> events_pb2.RoutingPolicy:
        policy = self._book.get(model)
        if policy is None:
            raise NotFound(f"model {model!r} has no routing policy")
        return policy

    async def set_policy(
        self, policy: events_pb2.RoutingPolicy, expected_revision: int, actor: str
    ) -> events_pb2.RoutingPolicy:
        current = self._book.get(policy.model)
        current_revision = current.revision if current else 0
        if expected_revision != current_revision:
            raise FailedPrecondition(
                f"the policy of {policy.model!r} is at revision {current_revision}, not "
                f"{expected_revision}; read it again and retry"
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

    async def start(
        self, request: gateway_pb2.StartRolloutRequest, actor: str
    ) -> events_pb2.RoutingPolicy:
        policy = self._copy(request.model)
        candidate = check_version("candidate_version", request.candidate_version)
        if candidate == policy.stable_version:
            raise InvalidArgument("candidate_version", f"version {candidate} is already stable")
        if policy.canary.candidate_version or policy.blue_green.active_version:
            raise FailedPrecondition(
                f"{request.model} already has a rollout; promote or roll it back first"
            )
        await self._loader.load(request.model, candidate)  # loaded and healthy, or it raises
        now = dt.datetime.now(dt.UTC)
        if request.strategy == gateway_pb2.ROLLOUT_STRATEGY_BLUE_GREEN:
            hold = request.hold_s or self._hold_default_s  # 0: the configured default
            policy.blue_green.CopyFrom(
                events_pb2.BlueGreen(
                    active_version=candidate,
                    switched=stamp(now),
                    hold_until=stamp(now + dt.timedelta(seconds=hold)),
                )
            )
        elif request.strategy == gateway_pb2.ROLLOUT_STRATEGY_CANARY:
            plan = events_pb2.CanaryPlan()
            plan.CopyFrom(self._defaults)
            plan.candidate_version = candidate
            if request.steps:
                del plan.steps[:]
                plan.steps.extend(request.steps)
            plan.current_step = 0
            plan.step_started.CopyFrom(stamp(now))
            policy.canary.CopyFrom(plan)
            self._step_clock[request.model] = time.monotonic()
        else:
            raise InvalidArgument("strategy", "BLUE_GREEN or CANARY")
        committed = await self._commit(policy, policy.revision, actor)
        await self._announce(
            events_pb2.MODEL_EVENT_KIND_ROLLOUT_STARTED, committed, candidate, request.reason, actor
        )
        return committed

    async def promote(self, model: str, reason: str, actor: str) -> events_pb2.RoutingPolicy:
        policy = self._copy(model)
        candidate = policy.canary.candidate_version or policy.blue_green.active_version
        if not candidate:
            raise FailedPrecondition(f"{model} has no rollout to promote")
        champion = await self._champions.current(model)
        await self._champions.move(model, candidate, champion, reason or "promoted by the gateway")
        previous = policy.stable_version
        policy.stable_version = candidate
        policy.ClearField("canary")
        policy.ClearField("blue_green")
        committed = await self._commit(policy, policy.revision, actor)
        metrics.ROLLOUTS.labels(model, "promoted").inc()
        await self._announce(
            events_pb2.MODEL_EVENT_KIND_PROMOTED, committed, candidate, reason, actor, previous
        )
        return committed

    async def rollback(self, model: str, reason: str, actor: str) -> events_pb2.RoutingPolicy:
        policy = self._copy(model)
        candidate = policy.canary.candidate_version or policy.blue_green.active_version
        if not candidate:
            raise FailedPrecondition(f"{model} has no rollout to roll back")
        policy.ClearField("canary")
        policy.ClearField("blue_green")
        committed = await self._commit(policy, policy.revision, actor)
        metrics.ROLLOUTS.labels(model, "rolled_back").inc()
        log.warning("rolled back %s v%s: %s", model, candidate, reason)
        await self._announce(
            events_pb2.MODEL_EVENT_KIND_ROLLED_BACK, committed, candidate, reason, actor
        )
        return committed

    async def tick(self) -> None:
        """One controller round over every model (the lease holder only)."""
        for model in self._book.models():
            policy = self._book.get(model)
            if policy is None:
                continue
            try:
                if policy.canary.candidate_version:
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
        if result.verdict != Verdict.FAIL and self._quality is not None:
            since = (
                plan.step_started.ToDatetime(tzinfo=dt.UTC)
                if plan.HasField("step_started")
                else dt.datetime.now(dt.UTC) - dt.timedelta(seconds=elapsed)
            )
            reasons += await self._quality.failures(
                model, policy.stable_version, plan.candidate_version, since, plan
            )
        if reasons:
            self._step_clock.pop(model, None)
            await self.rollback(
                model, "canary analysis failed: " + "; ".join(reasons), "controller"
            )
        elif result.verdict == Verdict.PASS:
            if plan.current_step + 1 >= len(plan.steps):
                self._step_clock.pop(model, None)
                await self.promote(model, "canary passed every step", "controller")
                return
            updated = self._copy(model)
            updated.canary.current_step += 1
            updated.canary.step_started.CopyFrom(stamp(dt.datetime.now(dt.UTC)))
            committed = await self._commit(updated, updated.revision, "controller")
            self._step_clock[model] = time.monotonic()
            weight = committed.canary.steps[committed.canary.current_step].weight_bp
            await self._announce(
                events_pb2.MODEL_EVENT_KIND_ROLLOUT_STEPPED,
                committed,
                plan.candidate_version,
                f"step {committed.canary.current_step + 1}/{len(plan.steps)}: {weight / 100:g}% "
                f"(after {candidate.requests} candidate requests, error rate "
                f"{candidate.error_rate:.2%}, p99 {candidate.p99_ms:.1f} ms, "
                f"output distance {result.output_distance:.3f})",
                "controller",
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


def default_plan(
    steps: Sequence[int] = DEFAULT_STEPS,
    min_requests: int = 200,
    min_duration_s: int = 60,
    max_error_rate_increase: float = 0.02,
    max_p99_latency_ratio: float = 2.0,
    max_output_distance: float = 0.3,
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
    )
