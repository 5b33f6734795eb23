"""Single-row predictions of a threaded model coalesced into shared calls: a lone row goes
at once, rows arriving during a call share the next one (up to the limit), each gets its
own prediction, and a failing shared call fails only the row that broke it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest

from driftloop.inference.coalescing import Coalescer
from driftloop.models.schema import Feature, Prediction, Row, Schema


class Gated:
    """Predicts value = x; the first call waits on a gate; records every call's rows."""

    inline = False
    schema = Schema((Feature("x", "number"),))
    output_kind = "regression"

    def __init__(self) -> None:
        self.calls: list[list[float]] = []
        self.entered = threading.Event()
        self.gate = threading.Event()

    def predict(self, rows: Sequence[Row]) -> list[Prediction]:
        self.calls.append([float(row["x"]) for row in rows])
        self.entered.set()
        self.gate.wait(10)
        if any(row["x"] == -1.0 for row in rows):
            raise ValueError("x = -1 breaks this model")
        return [Prediction(value=float(row["x"])) for row in rows]


async def started(model: Gated, coalescer: Coalescer, x: float) -> asyncio.Task[Prediction]:
    """The first request, its call running (blocked on the gate)."""
    task = asyncio.create_task(coalescer.predict({"x": x}))
    assert await asyncio.to_thread(model.entered.wait, 10)
    return task


async def test_rows_arriving_during_a_call_share_the_next_one() -> None:
    model = Gated()
    coalescer = Coalescer(model, max_rows=3)  # type: ignore[arg-type]  # a test double
    first = await started(model, coalescer, 0.0)
    rest = [asyncio.create_task(coalescer.predict({"x": float(i)})) for i in range(1, 6)]
    await asyncio.sleep(0)  # let them queue (no timing: the gate holds the call)
    model.gate.set()
    results = await asyncio.gather(first, *rest)
    assert [p.value for p in results] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert model.calls == [[0.0], [1.0, 2.0, 3.0], [4.0, 5.0]]
    # Idle again: the next row is a call of its own, at once.
    assert (await coalescer.predict({"x": 9.0})).value == 9.0
    assert model.calls[-1] == [9.0]


async def test_a_failing_shared_call_fails_only_the_row_that_broke_it() -> None:
    model = Gated()
    coalescer = Coalescer(model)  # type: ignore[arg-type]  # a test double
    first = await started(model, coalescer, 0.0)
    shared = [asyncio.create_task(coalescer.predict({"x": x})) for x in (1.0, -1.0, 2.0)]
    await asyncio.sleep(0)
    model.gate.set()
    results = await asyncio.gather(first, *shared, return_exceptions=True)
    assert isinstance(results[2], ValueError)
    assert [r.value for r in results if isinstance(r, Prediction)] == [0.0, 1.0, 2.0]
    assert model.calls == [[0.0], [1.0, -1.0, 2.0], [1.0], [-1.0], [2.0]]


async def test_a_caller_that_gives_up_leaves_the_others_their_answers() -> None:
    model = Gated()
    coalescer = Coalescer(model)  # type: ignore[arg-type]  # a test double
    first = await started(model, coalescer, 0.0)
    leaving = asyncio.create_task(coalescer.predict({"x": 1.0}))
    staying = asyncio.create_task(coalescer.predict({"x": 2.0}))
    await asyncio.sleep(0)
    leaving.cancel()
    model.gate.set()
    assert (await staying).value == 2.0 and (await first).value == 0.0
    with pytest.raises(asyncio.CancelledError):
        await leaving
    await coalescer.close()
