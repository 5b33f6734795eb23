"""The default routing policy: a model nobody wrote a policy for is served by its champion.

The default is `stable_version = <the champion alias's version>` and nothing else (no
variants, rollout or shadow), at revision 0, so the first policy written (`driftloop
routing set`, SetRoutingPolicy with expected_revision 0, or a rollout) replaces it.
A written policy always wins; the default is only consulted when the book has none.

It follows alias moves: this replica hears every ALIAS_MOVED of the model-events topic
(the gateway's tail, from the end) and takes the new version at once. What the tail
cannot tell, the champion as it was before this replica started, the registry answers on
the model's first request; a known answer is asked again after `refresh_s` (a safety
net for an event this replica missed, e.g. while the broker was away), so a champion
set while no event reached the gateway is served within `refresh_s`. Concurrent first
requests of one model share one registry call, and a model without a champion is not
asked about again for `refresh_s` either (a typo'd model name cannot flood the registry).
An event that arrives while a registry call is in flight wins over that call's answer,
which may predate it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from driftloop.gateway.policies import PolicyBook
from driftloop.v1 import events_pb2

CHAMPION = "champion"
# Answers kept: past this many, the models without a champion are forgotten (asked again
# when next requested), so requests for ever new model names cannot grow memory.
MAX_KNOWN = 10_000
DEFAULT_ACTOR = "default: the champion alias"


class ChampionSource(Protocol):
    async def current(self, model: str) -> str:
        """The version the champion alias points to now; "" when it is not set."""
        ...


def no_policy(model: str) -> str:
    """Why the gateway cannot route a model (no policy, no champion), with the two
    commands that fix it."""
    return (
        f"model {model!r} has no routing policy and no champion: serve a version with "
        f"`driftloop models alias --model {model} --alias champion --version N` (the gateway "
        f"then serves the champion and follows its moves) or `driftloop routing set --model "
        f"{model} --stable N` (SetRoutingPolicy)"
    )


def default_policy(model: str, champion: str) -> events_pb2.RoutingPolicy:
    return events_pb2.RoutingPolicy(
        model=model, stable_version=champion, salt=model, updated_by=DEFAULT_ACTOR
    )


@dataclass
class _Known:
    version: str
    asked: float


class ServedPolicies:
    """The policy each model is served by: the one written, else the default."""

    def __init__(
        self,
        book: PolicyBook,
        champions: ChampionSource,
        refresh_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._book = book
        self._champions = champions
        self._refresh_s = refresh_s
        self._clock = clock
        self._known: dict[str, _Known] = {}
        self._asking: dict[str, asyncio.Future[str]] = {}
        self._moves: dict[str, int] = {}

    def alias_moved(self, model: str, alias: str, version: str) -> None:
        """A model event: the champion of `model` is now `version`."""
        if alias != CHAMPION:
            return
        self._moves[model] = self._moves.get(model, 0) + 1
        self._remember(model, version)

    async def policy(self, model: str) -> events_pb2.RoutingPolicy | None:
        """The written policy of `model`, else its default; None when it has neither.
        Registry failures propagate (UNAVAILABLE: retry)."""
        written = self._book.get(model)
        if written is not None:
            return written
        champion = await self._champion(model)
        return default_policy(model, champion) if champion else None

    async def _champion(self, model: str) -> str:
        known = self._known.get(model)
        if known is not None and self._clock() - known.asked < self._refresh_s:
            return known.version
        asking = self._asking.get(model)
        if asking is None:
            asking = asyncio.ensure_future(self._ask(model))
            self._asking[model] = asking
            asking.add_done_callback(lambda done: self._asked(model, done))
        # shield: one caller's cancelled deadline must not cancel the others' shared call
        return await asyncio.shield(asking)

    async def close(self) -> None:
        """Cancel the registry calls in flight (the server has stopped: nobody waits)."""
        asking = list(self._asking.values())
        for call in asking:
            call.cancel()
        await asyncio.gather(*asking, return_exceptions=True)

    def _asked(self, model: str, done: asyncio.Future[str]) -> None:
        self._asking.pop(model, None)
        if not done.cancelled():
            done.exception()  # retrieved: a failure every caller gave up on is not an error

    async def _ask(self, model: str) -> str:
        moves = self._moves.get(model, 0)
        version = await self._champions.current(model)
        newer = self._known.get(model)
        if self._moves.get(model, 0) != moves and newer is not None:  # an event came meanwhile
            return newer.version
        self._remember(model, version)
        return version

    def _remember(self, model: str, version: str) -> None:
        if len(self._known) >= MAX_KNOWN:
            self._known = {m: k for m, k in self._known.items() if k.version}
        self._known[model] = _Known(version, self._clock())
