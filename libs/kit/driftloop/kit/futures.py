"""Settling a future that its waiter may already have given up on."""

from __future__ import annotations

import asyncio
from typing import TypeVar

T = TypeVar("T")


def settle(
    future: asyncio.Future[T], result: T | None = None, error: BaseException | None = None
) -> None:
    """Give `future` its result, or `error` when one is given; nothing when it is done
    already (its waiter gave up: a deadline, a cancelled call)."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        assert result is not None
        future.set_result(result)
