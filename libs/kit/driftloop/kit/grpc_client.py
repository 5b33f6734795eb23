"""Client channels to driftloop services, with optional TLS and the admin bearer token,
and the retrying of a call a service answered UNAVAILABLE."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import grpc
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_random_exponential

from driftloop.kit.errors import ErrorCode, Upstream

T = TypeVar("T")


def open_channel(
    target: str,
    *,
    tls_ca_file: Path | None = None,
    tls_cert_file: Path | None = None,
    tls_key_file: Path | None = None,
    max_message_bytes: int = 16 * 1024 * 1024,
) -> grpc.aio.Channel:
    """An asyncio channel to `target`; TLS when a CA file is given (mutual with cert+key).
    Calls go round-robin over every address the target resolves to (`dns:///name:port` of
    a headless Kubernetes Service: each replica), not all to the first one."""
    options = [
        ("grpc.lb_policy_name", "round_robin"),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
    ]
    if tls_ca_file is None:
        return grpc.aio.insecure_channel(target, options=options)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=tls_ca_file.read_bytes(),
        private_key=tls_key_file.read_bytes() if tls_key_file else None,
        certificate_chain=tls_cert_file.read_bytes() if tls_cert_file else None,
    )
    return grpc.aio.secure_channel(target, credentials, options=options)


ACTOR_HEADER = "x-driftloop-actor"


def admin_metadata(token: str, actor: str = "") -> tuple[tuple[str, str], ...]:
    """Call metadata that authorises an admin RPC (and names who acts, when given)."""
    metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {token}"),)
    return (*metadata, (ACTOR_HEADER, actor)) if actor else metadata


def upstream_error(error: grpc.aio.AioRpcError, what: str = "") -> Upstream:
    """Another service's status as a domain error with the same code, passed on as it is."""
    name = error.code().name
    code = ErrorCode[name] if name in ErrorCode.__members__ else ErrorCode.UNKNOWN
    details = error.details() or name
    return Upstream(code, f"{what}: {details}" if what else details)


def is_unavailable(error: BaseException) -> bool:
    return isinstance(error, grpc.aio.AioRpcError) and error.code() == grpc.StatusCode.UNAVAILABLE


async def retried_when_unavailable(
    call: Callable[[], Awaitable[T]],
    retries: int,
    *,
    first_s: float = 0.2,
    max_s: float = 5.0,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """`call()`'s answer, attempted up to 1 + `retries` times while the service answers
    UNAVAILABLE (down, restarting, not listening yet); any other error, or the last
    UNAVAILABLE, is raised as it is. Only for calls that are safe to repeat.

    The n-th wait is random in [0, min(first_s * 2**(n-1), max_s)] (tenacity's
    `wait_random_exponential`, "full jitter", as the services' start-up waits): the
    windows widen so a restart gets time, and clients that failed together (every replica
    of a caller when a service restarts) do not knock again in step. With the defaults
    the expected waits are 0.1, 0.2, 0.4 s ..., the fixed waits this replaced."""
    retrying = AsyncRetrying(
        retry=retry_if_exception(is_unavailable),
        stop=stop_after_attempt(1 + retries),
        wait=wait_random_exponential(multiplier=first_s, max=max_s),
        sleep=sleep,
        reraise=True,
    )

    async def attempt() -> T:  # tenacity awaits only what a coroutine function returns
        return await call()

    answer: T = await retrying(attempt)
    return answer
