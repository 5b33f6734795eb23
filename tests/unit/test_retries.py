"""A call retried when its service answers UNAVAILABLE (driftloop.kit.grpc_client): how
many attempts, which errors end it, and the waits between (exponential windows, full
jitter, capped)."""

from __future__ import annotations

import random
from typing import Any

import grpc
import pytest

from driftloop.kit.grpc_client import retried_when_unavailable


def rpc_error(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), "said no")


class Flaky:
    """A call (or a stub method: it takes any arguments) that answers UNAVAILABLE
    `failures` times, then `code` (or "answer")."""

    def __init__(self, failures: int, code: grpc.StatusCode | None = None) -> None:
        self.failures, self.code, self.calls = failures, code, 0

    async def __call__(self, *_: Any, **__: Any) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise rpc_error(grpc.StatusCode.UNAVAILABLE)
        if self.code is not None:
            raise rpc_error(self.code)
        return "answer"


class Waits:
    """Stands for asyncio.sleep: records each wait, waits for nothing."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)


async def test_unavailable_is_retried_until_an_answer() -> None:
    call, waits = Flaky(failures=2), Waits()
    assert await retried_when_unavailable(call, 3, sleep=waits) == "answer"
    assert call.calls == 3 and len(waits.seconds) == 2


async def test_the_last_unavailable_and_any_other_error_are_raised_as_they_are() -> None:
    down, waits = Flaky(failures=10), Waits()
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await retried_when_unavailable(down, 3, sleep=waits)
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert down.calls == 4 and len(waits.seconds) == 3  # the first attempt and 3 retries
    refused = Flaky(failures=0, code=grpc.StatusCode.FAILED_PRECONDITION)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await retried_when_unavailable(refused, 3, sleep=waits)
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION and refused.calls == 1
    once = Flaky(failures=1)
    with pytest.raises(grpc.aio.AioRpcError):
        await retried_when_unavailable(once, 0, sleep=waits)
    assert once.calls == 1


async def test_the_waits_are_random_in_doubling_windows_up_to_the_cap() -> None:
    random.seed(13)
    windows = [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    expected = [random.uniform(0, window) for window in windows]
    random.seed(13)
    waits = Waits()
    with pytest.raises(grpc.aio.AioRpcError):
        await retried_when_unavailable(Flaky(failures=100), len(windows), sleep=waits)
    assert waits.seconds == pytest.approx(expected)
    assert all(0 <= wait <= window for wait, window in zip(waits.seconds, windows, strict=True))
    # Jittered: two clients that failed together do not wait alike.
    first, second = Waits(), Waits()
    for waits in (first, second):
        with pytest.raises(grpc.aio.AioRpcError):
            await retried_when_unavailable(Flaky(failures=100), 3, sleep=waits)
    assert first.seconds != second.seconds
