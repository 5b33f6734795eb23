"""The default routing policy: the champion, following alias moves."""

from __future__ import annotations

import asyncio

import pytest

from driftloop.gateway import champions
from driftloop.gateway.champions import ServedPolicies, no_policy
from driftloop.gateway.policies import PolicyBook
from driftloop.v1 import events_pb2


class Registry:
    """The champion alias as the registry answers it, counting the questions."""

    def __init__(self, champion: str = "") -> None:
        self.champion = champion
        self.asked = 0
        self.gate: asyncio.Event | None = None
        self.called = asyncio.Event()

    async def current(self, model: str) -> str:
        self.asked += 1
        self.called.set()
        if self.gate is not None:
            await self.gate.wait()
        return self.champion


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_a_model_with_a_champion_is_served_by_it_at_revision_0() -> None:
    served = ServedPolicies(PolicyBook(), Registry("3"))
    policy = await served.policy("churn")
    assert policy is not None
    assert (policy.model, policy.stable_version, policy.revision) == ("churn", "3", 0)
    assert policy.salt == "churn" and not policy.variants and not policy.canary.candidate_version


async def test_a_written_policy_wins_over_the_champion() -> None:
    book = PolicyBook()
    book.apply(events_pb2.RoutingPolicy(model="churn", stable_version="1", revision=4))
    registry = Registry("3")
    policy = await ServedPolicies(book, registry).policy("churn")
    assert policy is not None and policy.stable_version == "1" and policy.revision == 4
    assert registry.asked == 0


async def test_alias_moves_are_followed_at_once_and_the_registry_is_asked_again_later() -> None:
    registry, clock = Registry("3"), Clock()
    served = ServedPolicies(PolicyBook(), registry, refresh_s=30, clock=clock)
    assert (await served.policy("churn")).stable_version == "3"  # type: ignore[union-attr]
    served.alias_moved("churn", "champion", "4")
    served.alias_moved("churn", "staging", "9")  # another alias: not the champion
    assert (await served.policy("churn")).stable_version == "4"  # type: ignore[union-attr]
    assert registry.asked == 1
    registry.champion = "5"  # moved while this replica heard nothing
    clock.now = 31
    assert (await served.policy("churn")).stable_version == "5"  # type: ignore[union-attr]
    assert registry.asked == 2


async def test_no_champion_is_none_and_not_asked_again_until_the_refresh() -> None:
    registry, clock = Registry(""), Clock()
    served = ServedPolicies(PolicyBook(), registry, refresh_s=30, clock=clock)
    assert await served.policy("churn") is None
    assert await served.policy("churn") is None
    assert registry.asked == 1
    served.alias_moved("churn", "champion", "1")  # set: served at once
    assert (await served.policy("churn")).stable_version == "1"  # type: ignore[union-attr]


async def test_concurrent_first_requests_share_one_registry_call_and_an_event_wins() -> None:
    registry = Registry("3")
    registry.gate = asyncio.Event()
    served = ServedPolicies(PolicyBook(), registry)
    waiting = [asyncio.create_task(served.policy("churn")) for _ in range(20)]
    await registry.called.wait()
    served.alias_moved("churn", "champion", "4")  # newer than the answer in flight
    registry.gate.set()
    policies = await asyncio.gather(*waiting)
    assert registry.asked == 1
    assert {p.stable_version for p in policies if p is not None} == {"4"}


async def test_models_without_a_champion_cannot_grow_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(champions, "MAX_KNOWN", 10)
    registry = Registry("")
    served = ServedPolicies(PolicyBook(), registry)
    served.alias_moved("churn", "champion", "2")
    for n in range(25):
        assert await served.policy(f"typo-{n}") is None
    assert len(served._known) <= 10
    assert (await served.policy("churn")).stable_version == "2"  # type: ignore[union-attr]
    assert registry.asked == 25


async def test_closing_cancels_the_registry_calls_in_flight() -> None:
    registry = Registry("3")
    registry.gate = asyncio.Event()  # never set: the registry does not answer
    served = ServedPolicies(PolicyBook(), registry)
    waiting = asyncio.create_task(served.policy("churn"))
    await registry.called.wait()
    await served.close()
    results = await asyncio.gather(waiting, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)


def test_the_error_names_the_commands_that_fix_it() -> None:
    message = no_policy("churn")
    assert "driftloop models alias --model churn --alias champion --version N" in message
    assert "driftloop routing set --model churn --stable N" in message
