"""The windowed round starts on its clock, or sooner once enough rows were logged
(driftloop.drift.evaluator.Evaluator.run, DRIFTLOOP_DRIFT_EVALUATE_EVERY_ROWS)."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any, cast

from driftloop.drift.evaluator import Evaluator
from driftloop.drift.report import Thresholds


class Rounds:
    """Stands in for evaluate_active: counts rounds, and lets a test wait for the next."""

    def __init__(self) -> None:
        self.count = 0
        self.happened = asyncio.Event()

    async def __call__(self) -> int:
        self.count += 1
        self.happened.set()
        return 0


def evaluator(every_rows: int) -> tuple[Evaluator, Rounds]:
    unused = cast(Any, None)  # the round itself is replaced: no reader, store or registry
    built = Evaluator(
        unused,
        unused,
        unused,
        unused,
        cast(Thresholds, None),
        1000,
        10,
        dt.timedelta(hours=1),
        every_rows,
    )
    rounds = Rounds()
    built.evaluate_active = rounds  # type: ignore[method-assign]  # the round under test
    return built, rounds


async def test_enough_logged_rows_start_a_round_before_the_clock() -> None:
    built, rounds = evaluator(every_rows=1000)
    task = asyncio.create_task(built.run(every_s=3600))
    try:
        built.arrived(600)
        await asyncio.sleep(0)  # the loop runs; 600 rows are not enough
        assert rounds.count == 0
        built.arrived(400)
        await asyncio.wait_for(rounds.happened.wait(), 10)
        assert rounds.count == 1
        # The count starts again after a round.
        rounds.happened.clear()
        built.arrived(999)
        await asyncio.sleep(0)
        assert rounds.count == 1
        built.arrived(1)
        await asyncio.wait_for(rounds.happened.wait(), 10)
        assert rounds.count == 2
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_without_a_row_count_rounds_run_on_the_clock_only() -> None:
    built, rounds = evaluator(every_rows=0)
    task = asyncio.create_task(built.run(every_s=0.05))
    try:
        built.arrived(10_000_000)
        await asyncio.wait_for(rounds.happened.wait(), 10)
        assert rounds.count >= 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
