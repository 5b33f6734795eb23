"""Single-row predictions of a threaded model, coalesced into shared calls.

A model that predicts in a worker thread (the sklearn, onnx, river and python flavors)
pays a fixed cost per call (building its input, the estimator's own checks: about a
millisecond for a scikit-learn pipeline) that dwarfs its cost per row, and concurrent calls
mostly queue for the GIL. So the single-row requests to one loaded model share calls:
while a call runs, the rows that arrive wait, and when it ends they all go into the next
call (up to `max_rows`). A lone request is never delayed: an idle model starts its call
at once. If a shared call fails, its rows are retried one by one, so a row the model
cannot score fails only its own request. Transport-free: rows in, predictions out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from driftloop.kit.futures import settle
from driftloop.models.schema import Model, Prediction, Row

MAX_ROWS = 64

Waiting = tuple[Row, "asyncio.Future[Prediction]"]


class Coalescer:
    def __init__(self, model: Model, max_rows: int = MAX_ROWS) -> None:
        self._model = model
        self._max_rows = max_rows
        self._waiting: list[Waiting] = []
        self._draining: asyncio.Task[None] | None = None

    async def predict(self, row: Row) -> Prediction:
        future: asyncio.Future[Prediction] = asyncio.get_running_loop().create_future()
        self._waiting.append((row, future))
        if self._draining is None:
            self._draining = asyncio.create_task(self._drain(), name="coalesced predictions")
        return await future

    async def close(self) -> None:
        """Wait for the call in flight (a worker thread cannot be interrupted)."""
        if self._draining is not None:
            await asyncio.gather(self._draining, return_exceptions=True)

    async def _drain(self) -> None:
        batch: list[Waiting] = []
        try:
            while self._waiting:
                batch = self._waiting[: self._max_rows]
                del self._waiting[: self._max_rows]
                await self._call(batch)
        finally:
            self._draining = None
            for _, future in [*batch, *self._waiting]:  # cancelled: nobody will score them
                if not future.done():
                    future.cancel()
            self._waiting.clear()

    async def _call(self, batch: Sequence[Waiting]) -> None:
        rows = [row for row, _ in batch]
        try:
            predictions = await asyncio.to_thread(self._model.predict, rows)
            if len(predictions) != len(rows):
                raise RuntimeError(
                    f"the model returned {len(predictions)} predictions for {len(rows)} rows"
                )
        except Exception as error:  # noqa: BLE001  # a flavor may raise anything: the request's error
            if len(batch) == 1:
                settle(batch[0][1], error=error)
                return
            for one in batch:
                await self._call([one])
            return
        for (_, future), prediction in zip(batch, predictions, strict=True):
            settle(future, prediction)
