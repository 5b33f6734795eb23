"""Routing, policy validation, canary analysis and the event buffer: the gateway's core."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import REGISTRY
from pydantic import ValidationError

from driftloop.gateway.buffer import EventBuffer
from driftloop.gateway.canary import QualityOpinion, Verdict, VersionStats, analyse
from driftloop.gateway.config import GatewaySettings
from driftloop.gateway.policies import PolicyBook, validate
from driftloop.gateway.rollouts import EARLY, NO_QUALITY, Rollouts, RolloutStart, default_plan
from driftloop.gateway.routing import route, shadow_versions
from driftloop.kit.errors import InvalidArgument
from driftloop.stats import output_distance
from driftloop.v1 import events_pb2


def ab(weights: tuple[int, int]) -> events_pb2.RoutingPolicy:
    return events_pb2.RoutingPolicy(
        model="churn",
        stable_version="1",
        salt="s1",
        variants=[
            events_pb2.Variant(name="a", version="1", weight_bp=weights[0]),
            events_pb2.Variant(name="b", version="2", weight_bp=weights[1]),
        ],
    )


def test_ab_shares_are_kept_and_assignment_is_sticky() -> None:
    policy = ab((7000, 3000))
    keys = [f"user-{n}" for n in range(2000)]
    seen: dict[str, set[str]] = {key: set() for key in keys}
    shares: Counter[str] = Counter()
    for n in range(20_000):
        key = keys[n % len(keys)]
        chosen = route(policy, key, f"request-{n}")
        seen[key].add(chosen.variant)
        shares[chosen.variant] += 1
    assert all(len(variants) == 1 for variants in seen.values())
    assert abs(shares["a"] / 20_000 - 0.70) <= 0.02
    assert abs(shares["b"] / 20_000 - 0.30) <= 0.02


def test_a_weight_change_moves_only_the_keys_in_the_moved_buckets() -> None:
    keys = [f"user-{n}" for n in range(2000)]
    before = {key: route(ab((7000, 3000)), key, "").variant for key in keys}
    after = {key: route(ab((6000, 4000)), key, "").variant for key in keys}
    moved = [key for key in keys if before[key] != after[key]]
    assert all(before[key] == "a" and after[key] == "b" for key in moved)
    assert 0.08 <= len(moved) / len(keys) <= 0.12


def test_requests_without_a_key_are_assigned_per_request() -> None:
    policy = ab((5000, 5000))
    variants = {route(policy, "", f"request-{n}").variant for n in range(50)}
    assert variants == {"a", "b"}


def test_a_canary_ramp_only_moves_keys_to_the_candidate() -> None:
    policy = events_pb2.RoutingPolicy(
        model="churn", stable_version="1", salt="s", canary=default_plan()
    )
    policy.canary.candidate_version = "2"
    keys = [f"user-{n}" for n in range(5000)]
    previous = {key: "stable" for key in keys}
    for step, expected in enumerate((0.01, 0.05, 0.25, 0.50, 1.0)):
        policy.canary.current_step = step
        current = {key: route(policy, key, "").variant for key in keys}
        assert all(previous[key] == "stable" or current[key] == "canary" for key in keys)
        assert abs(sum(v == "canary" for v in current.values()) / len(keys) - expected) < 0.02
        previous = current


def test_blue_green_sends_everything_to_the_active_version_and_shadow_samples() -> None:
    policy = events_pb2.RoutingPolicy(model="churn", stable_version="1", salt="s")
    policy.blue_green.active_version = "2"
    assert {route(policy, f"k{n}", "").version for n in range(100)} == {"2"}
    policy.shadow.versions.append("3")
    policy.shadow.sample_bp = 2500
    sampled = sum(bool(shadow_versions(policy, f"r{n}")) for n in range(4000))
    assert abs(sampled / 4000 - 0.25) < 0.03
    policy.shadow.sample_bp = 10_000
    assert all(shadow_versions(policy, f"r{n}") == ["3"] for n in range(100))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda p: setattr(p, "stable_version", "x"), "policy.stable_version"),
        (
            lambda p: p.variants.append(events_pb2.Variant(name="a", version="1", weight_bp=9_000)),
            "policy.variants",
        ),
        (lambda p: setattr(p.shadow, "sample_bp", 20_000), "policy.shadow.sample_bp"),
        (lambda p: setattr(p, "model", "bad name"), "policy.model"),
    ],
)
def test_policies_are_validated(change: Any, field: str) -> None:
    policy = events_pb2.RoutingPolicy(model="churn", stable_version="1")
    validate(policy)
    change(policy)
    with pytest.raises(InvalidArgument) as error:
        validate(policy)
    assert error.value.field == field


def test_the_book_keeps_only_newer_revisions() -> None:
    book = PolicyBook()
    assert book.apply(events_pb2.RoutingPolicy(model="m", stable_version="1", revision=2))
    assert not book.apply(events_pb2.RoutingPolicy(model="m", stable_version="9", revision=1))
    book_policy = book.get("m")
    assert book_policy is not None and book_policy.stable_version == "1"


def test_the_book_knows_which_models_have_a_rollout_running() -> None:
    """What the controller's round looks at: a rollout's model while it runs, only."""
    book = PolicyBook()
    for name in ("a", "b", "c", "d"):
        book.apply(events_pb2.RoutingPolicy(model=name, stable_version="1", revision=1))
    assert book.rolling_out() == []
    canary = events_pb2.CanaryPlan(candidate_version="2", steps=default_plan().steps)
    green = events_pb2.BlueGreen(active_version="2")
    gate = events_pb2.ShadowGate(candidate_version="2")
    book.apply(events_pb2.RoutingPolicy(model="c", canary=canary, revision=2))
    book.apply(events_pb2.RoutingPolicy(model="a", blue_green=green, revision=2))
    book.apply(events_pb2.RoutingPolicy(model="d", shadow_gate=gate, revision=2))
    assert book.rolling_out() == ["a", "c", "d"]
    book.apply(events_pb2.RoutingPolicy(model="c", stable_version="2", revision=3))  # promoted
    book.apply(events_pb2.RoutingPolicy(model="a", stable_version="1", revision=1))  # older
    assert book.rolling_out() == ["a", "d"]


def stats(
    requests: int,
    errors: int = 0,
    p99: float = 1.0,
    outputs: tuple[float, ...] = (),
    p50: float = 0.5,
) -> VersionStats:
    values = outputs or tuple(0.1 * (n % 10) for n in range(requests - errors))
    return VersionStats(requests, errors, p99, values, p50)


def test_canary_analysis_waits_passes_and_fails_with_reasons() -> None:
    plan = default_plan(min_requests=100, min_duration_s=10)
    assert analyse(plan, stats(1000), stats(50), 60).verdict == Verdict.WAIT
    assert analyse(plan, stats(1000), stats(200), 5).verdict == Verdict.WAIT
    assert analyse(plan, stats(1000), stats(200), 60).verdict == Verdict.PASS
    failing = analyse(plan, stats(1000, errors=2), stats(200, errors=20), 60)
    assert failing.verdict == Verdict.FAIL and "error rate 10.0%" in failing.reasons[0]
    slow = analyse(plan, stats(1000, p99=2.0), stats(250, p99=40.0, p50=30.0), 1)
    tail_only = analyse(plan, stats(1000, p99=2.0), stats(250, p99=40.0, p50=0.6), 60)
    assert tail_only.verdict == Verdict.PASS  # a slow tail alone is load noise
    assert analyse(plan, stats(1000, p99=2.0), stats(200, p99=12.0), 60).verdict == Verdict.PASS
    assert slow.verdict == Verdict.FAIL and "p99 latency 40.0 ms" in slow.reasons[0]
    shifted = analyse(plan, stats(1000), stats(200, outputs=(0.99,) * 200), 60)
    assert shifted.verdict == Verdict.FAIL and "output distance" in shifted.reasons[0]


def test_js_distance_is_zero_for_equal_and_one_for_disjoint_samples() -> None:
    assert output_distance((0.1, 0.2, 0.3), (0.1, 0.2, 0.3)) == pytest.approx(0.0)
    assert output_distance((0.0,) * 10, (1.0,) * 10) == pytest.approx(1.0)
    assert output_distance((0.62,) * 10, (0.63,) * 10) == pytest.approx(0.0)  # one bin
    values = tuple(float(v) for v in range(100))
    assert output_distance(values, values) == pytest.approx(0.0)
    assert output_distance(values, tuple(v + 1000 for v in values)) > 0.85  # all in the top bin


async def until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    """Yield to the loop until `condition` holds (the buffer's task runs meanwhile)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0)


class FlakySender:
    def __init__(self) -> None:
        self.up = True
        self.sent: list[bytes] = []

    async def enqueue(self, topic: str, key: str | bytes, event: Any) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.up:
            self.sent.append(event)
            future.set_result(None)
        else:
            future.set_exception(ConnectionError("broker down"))
        return future


async def test_the_buffer_never_blocks_and_its_counts_add_up() -> None:
    sender = FlakySender()
    heard: Counter[str] = Counter()
    buffer = EventBuffer(
        sender,
        "t",
        capacity=100,
        batch=10,
        on_dropped=lambda reason, records: heard.update({reason: records}),
    )
    event = events_pb2.LabelEvent(request_id="r", label="1")
    buffer.start()
    for _ in range(50):
        assert buffer.offer("r", event)
    await until(lambda: buffer.counts.delivered == 50)
    sender.up = False
    for _ in range(30):
        buffer.offer("r", event)
    await until(lambda: buffer.counts.dropped_failed == 30)
    assert buffer._task is not None
    buffer._task.cancel()  # stall the drain, as a hung broker connection does: the queue fills
    await asyncio.gather(buffer._task, return_exceptions=True)
    accepted = [buffer.offer("r", event) for _ in range(150)]
    assert accepted.count(False) == 50
    sender.up = True
    buffer.start()
    await buffer.stop()
    counts = buffer.counts
    assert counts.offered == 230
    assert counts.delivered == len(sender.sent) == 150
    assert counts.dropped_failed == 30 and counts.dropped_full == 50
    assert counts.offered == counts.delivered + counts.dropped
    assert heard == {"failed": 30, "full": 50}  # what the gateway's drop counters hear


class Fakes:
    """The controller's collaborators, in memory: the events it announced, the champion,
    the traffic it sees (`served`) and the drift service's view (`view`)."""

    def __init__(self) -> None:
        self.events: list[events_pb2.ModelEvent] = []
        self.champion = "1"
        self.served = {"1": VersionStats(1000, 0, 2.0, (0.5,) * 1000, 1.0)}
        self.view = QualityOpinion()
        self.asked_since: list[dt.datetime] = []

    async def publish(self, message: Any) -> None:
        if isinstance(message, events_pb2.ModelEvent):
            self.events.append(message)

    async def current(self, model: str) -> str:
        return self.champion

    async def move(self, model: str, version: str, expected: str, reason: str) -> None:
        self.champion = version

    async def load(self, model: str, version: str) -> None:
        return None

    async def check(self, model: str, version: str) -> None:
        return None

    def stats(self, model: str, version: str, since: float) -> VersionStats:
        return self.served.get(version, VersionStats(0, 0, 0.0, ()))

    async def opinion(
        self,
        model: str,
        stable: str,
        candidate: str,
        since: dt.datetime,
        plan: events_pb2.CanaryPlan,
    ) -> QualityOpinion:
        self.asked_since.append(since)
        return self.view

    def kinds(self) -> list[int]:
        return [event.kind for event in self.events]


async def controller(
    fakes: Fakes, *, quality: bool = True, min_labelled: int = 0, duration_s: int = 600
) -> Rollouts:
    """A controller over model churn (stable 1) with a canary of 2 started: two steps that
    each need 100 candidate requests and 10 minutes."""
    book = PolicyBook()
    book.apply(events_pb2.RoutingPolicy(model="churn", stable_version="1", revision=1))
    plan = default_plan(steps=(1000, 10_000), min_requests=100, min_duration_s=duration_s)
    plan.min_labelled_before_promotion = min_labelled
    rollouts = Rollouts(
        book, fakes, fakes, fakes, fakes, fakes, defaults=plan, quality=fakes if quality else None
    )
    await rollouts.start(RolloutStart("churn", "2", "canary"), "test")
    return rollouts


HEALTHY = VersionStats(150, 0, 2.0, (0.5,) * 150, 1.0)


def step_gauge() -> float | None:
    return REGISTRY.get_sample_value("driftloop_gateway_rollout_step", {"model": "churn"})


def rollout_outcomes(outcome: str) -> float:
    labels = {"model": "churn", "outcome": outcome}
    return REGISTRY.get_sample_value("driftloop_gateway_rollouts_total", labels) or 0.0


async def test_sufficient_labelled_evidence_cuts_the_step_duration_short() -> None:
    fakes = Fakes()
    rollouts = await controller(fakes)
    fakes.served["2"] = HEALTHY
    await rollouts.tick()  # 10 minutes to go and no evidence: the step waits
    assert rollouts.policy("churn").canary.current_step == 0
    fakes.view = QualityOpinion(
        evidence_sufficient=True,
        candidate_labelled=300,
        stable_labelled=2800,
        quality_difference_low=-0.004,
    )
    fakes.served["2"] = VersionStats(90, 0, 2.0, (0.5,) * 90, 1.0)
    await rollouts.tick()  # evidence, but not the step's 100 requests yet
    assert rollouts.policy("churn").canary.current_step == 0
    fakes.served["2"] = HEALTHY
    await rollouts.tick()
    policy = rollouts.policy("churn")
    assert policy.canary.current_step == 1
    assert step_gauge() == 1
    (stepped,) = [e for e in fakes.events if e.kind == events_pb2.MODEL_EVENT_KIND_ROLLOUT_STEPPED]
    assert EARLY in stepped.reason and "300/2800 labelled rows" in stepped.reason
    assert NO_QUALITY not in stepped.reason
    # Every question covers the canary from its start, not from the step's.
    assert set(fakes.asked_since) == {policy.canary.started.ToDatetime(tzinfo=dt.UTC)}
    promoted = rollout_outcomes("promoted")
    await rollouts.tick()  # the last step: promoted early too
    assert fakes.champion == "2" and rollouts.policy("churn").stable_version == "2"
    assert EARLY in fakes.events[-1].reason
    assert step_gauge() == -1 and rollout_outcomes("promoted") == promoted + 1


async def test_the_last_step_waits_for_the_labelled_rows_the_plan_asks() -> None:
    fakes = Fakes()
    rollouts = await controller(fakes, min_labelled=500)
    fakes.served["2"] = HEALTHY
    fakes.view = QualityOpinion(evidence_sufficient=True, candidate_labelled=300)
    await rollouts.tick()
    assert rollouts.policy("churn").canary.current_step == 1  # the first step is not held
    await rollouts.tick()
    await rollouts.tick()
    assert fakes.champion == "1" and rollouts.policy("churn").canary.candidate_version == "2"
    fakes.view = QualityOpinion(evidence_sufficient=True, candidate_labelled=520)
    await rollouts.tick()
    assert fakes.champion == "2"
    promoted = fakes.events[-1]
    assert promoted.kind == events_pb2.MODEL_EVENT_KIND_PROMOTED
    assert "520 labelled candidate rows (at least 500 required)" in promoted.reason
    # Only the drift service counts labelled rows: the setting needs it.
    with pytest.raises(ValidationError, match="drift_target"):
        GatewaySettings(canary_min_labelled_before_promotion=500)
    assert (
        GatewaySettings(
            canary_min_labelled_before_promotion=500, drift_target="127.0.0.1:50053"
        ).canary_min_labelled_before_promotion
        == 500
    )


async def test_a_failure_of_the_drift_service_rolls_the_canary_back() -> None:
    fakes = Fakes()
    rollouts = await controller(fakes)
    fakes.served["2"] = HEALTHY
    fakes.view = QualityOpinion(failures=("drift service: quality 0.2 vs stable 0.8",))
    rolled_back = rollout_outcomes("rolled_back")
    await rollouts.tick()
    assert not rollouts.policy("churn").canary.candidate_version and fakes.champion == "1"
    assert step_gauge() == -1 and rollout_outcomes("rolled_back") == rolled_back + 1
    assert fakes.kinds()[-1] == events_pb2.MODEL_EVENT_KIND_ROLLED_BACK
    assert "drift service: quality" in fakes.events[-1].reason


async def test_without_a_drift_service_every_canary_event_says_there_is_no_quality_check(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fakes = Fakes()
    with caplog.at_level(logging.WARNING, logger="driftloop.gateway.rollouts"):
        rollouts = await controller(fakes, quality=False, duration_s=0)
    assert any(NO_QUALITY in record.getMessage() for record in caplog.records)
    fakes.served["2"] = HEALTHY
    await rollouts.tick()
    await rollouts.tick()
    assert fakes.kinds() == [
        events_pb2.MODEL_EVENT_KIND_ROLLOUT_STARTED,
        events_pb2.MODEL_EVENT_KIND_ROLLOUT_STEPPED,
        events_pb2.MODEL_EVENT_KIND_PROMOTED,
    ]
    assert all(NO_QUALITY in event.reason for event in fakes.events)
