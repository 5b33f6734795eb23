"""How a service on its own starts when what it needs is not up yet: it waits, instead of
exiting, and says what it waits for.

Containers start in any order (a broker restarting, ClickHouse still recovering, the
registry's pod scheduled last), so exiting would only turn one slow dependency into a
crash loop. `wait_for` retries an attempt with exponential backoff and full jitter
(tenacity's `wait_random_exponential`: replicas that started together do not knock in
step) up to a capped interval, forever, logging each failure with what is awaited, where
and which variable says where. Meanwhile `waiting_health` answers the service's health
checks on its own port with NOT_SERVING, so an orchestrator sees a live process that is
not ready (readiness, not liveness). What cannot get better by waiting (a data folder
another process holds, a port another process listens on, wrong credentials) raises
`CannotStart` (driftloop.kit.errors): one line, exit status 2.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic_settings import BaseSettings
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type
from tenacity.wait import wait_random_exponential

from driftloop.kit.grpc_client import open_channel
from driftloop.kit.grpc_server import GrpcServer, check_listenable
from driftloop.kit.settings import GrpcServerSettings, variables

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Dependency:
    """Something a service waits for at start-up: what it is, where (never a secret) and
    the variable that says where."""

    what: str
    address: str
    variable: str


@dataclass(frozen=True)
class Backoff:
    """Waits between attempts: random in [0, min(first_s * 2**n, max_s)]."""

    first_s: float = 0.5
    max_s: float = 30.0


async def wait_for(
    dependency: Dependency,
    attempt: Callable[[], Awaitable[T]],
    *,
    retry_on: tuple[type[BaseException], ...],
    backoff: Backoff = Backoff(),
) -> T:
    """`attempt()`'s result once it succeeds. A `retry_on` error means "not up yet": logged
    (WARNING, naming the dependency) and retried after a jittered, growing wait; any other
    error is raised at once."""

    def waiting(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        pause = state.next_action.sleep if state.next_action is not None else 0.0
        log.warning(
            "waiting for %s at %s (%s): %s; next attempt in %.1f s",
            dependency.what,
            dependency.address,
            dependency.variable,
            _described(error),
            pause,
            extra={"attempt": state.attempt_number},
        )

    retrying = AsyncRetrying(
        retry=retry_if_exception_type(retry_on),
        wait=wait_random_exponential(multiplier=backoff.first_s, max=backoff.max_s),
        before_sleep=waiting,
        reraise=True,
    )

    async def call() -> T:  # tenacity awaits only what a coroutine function returns
        return await attempt()

    result: T = await retrying(call)
    if retrying.statistics.get("attempt_number", 1) > 1:
        log.info("%s is up at %s", dependency.what, dependency.address)
    return result


class NotServing(Exception):
    """A service answered its health check with something other than SERVING."""


async def wait_for_service(
    what: str,
    settings: BaseSettings,
    field: str,
    *,
    tls_ca_file: Path | None = None,
    timeout_s: float = 5.0,
) -> None:
    """Wait until the driftloop service that `settings.<field>` targets answers its health
    check with SERVING: up, and done waiting for what it needs itself."""
    target = str(getattr(settings, field))
    dependency = Dependency(what, target, variables(type(settings), field)[0])
    async with open_channel(target, tls_ca_file=tls_ca_file) as channel:
        stub: Any = health_pb2_grpc.HealthStub(channel)  # the stubs type the sync client only

        async def serving() -> None:
            reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=timeout_s)
            if reply.status != health_pb2.HealthCheckResponse.SERVING:
                raise NotServing(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))

        await wait_for(dependency, serving, retry_on=(NotServing, grpc.aio.AioRpcError))


def _described(error: BaseException | None) -> str:
    """An error as one reads it: its class named once (aiokafka's already say theirs)."""
    if error is None:
        return "not ready"
    text = str(error)
    name = type(error).__name__
    return text if text.startswith(name) else f"{name}: {text}" if text else name


@asynccontextmanager
async def waiting_health(name: str, settings: GrpcServerSettings) -> AsyncIterator[None]:
    """While the body waits for dependencies, the service's gRPC port answers health checks
    with NOT_SERVING; the port is free again when the body is done (the service binds it).
    With port 0 (a port chosen at bind time, nothing could probe it) there is nothing to
    answer on. A port that cannot be listened on (its metrics port too, which the service
    binds only after the wait) stops the start at once: waiting would not free it."""
    check_listenable(settings, "metrics_port")
    if settings.port == 0:
        yield
        return
    server = GrpcServer(f"{name} (starting)", settings.model_copy(update={"metrics_port": None}))
    await server.start()
    try:
        yield
    finally:
        await server.stop(0)
