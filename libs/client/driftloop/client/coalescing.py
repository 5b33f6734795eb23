"""Single-row inference calls coalesced into PredictBatch calls when they pile up.

A grpc.aio call costs the caller and inference a fixed few hundred microseconds of CPU
each, whatever it carries (the call object, an HTTP/2 stream, metadata, a task on both
sides), and a row only a few more. Under load that fixed cost is what saturates the
gateway and inference. So the calls to one model version go out one by one while fewer
than `max_in_flight` of them are in flight: a lone request is never delayed, and at a
moderate rate nothing changes. Beyond that the requests that arrive wait, and when a call
in flight ends they all (up to `max_rows`) go as one PredictBatch.

Each request keeps its own answer and its own error. A batch that inference refuses (one
row it cannot score makes the whole batch INVALID_ARGUMENT) is retried row by row, so a
row fails only its own request, with the status its own Predict has. A batch that no
endpoint answers (the pool's Unavailable: down, or no time left) fails each of its rows
as each row's own call would have. A batch's deadline is the latest of its rows'; a row
whose own deadline is more than `DEADLINE_SLACK_S` earlier goes alone, so no row is
answered later than its deadline plus that slack.

`max_in_flight=0` turns coalescing off: every request is a Predict of its own. That is
the gateway's default, because a refused batch changes what a rollout's analysis sees:
the rows of a version that fails some inputs wait for the failed batch and then for
their own call, so its latency is charged for its failures too (a canary failing 5% of
its calls was rolled back for its p99 latency instead of its error rate).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Protocol

import grpc

from driftloop.kit.futures import settle
from driftloop.v1 import inference_pb2

MAX_IN_FLIGHT = 2  # the gateway's default
MAX_ROWS = 64
DEADLINE_SLACK_S = 0.005


class InferenceCalls(Protocol):
    """The two calls to inference (with the pool's failover): InferencePool."""

    async def predict(
        self, request: inference_pb2.InferenceRequest, budget_s: float
    ) -> inference_pb2.InferenceResponse: ...

    async def predict_batch(
        self, request: inference_pb2.InferenceBatchRequest, budget_s: float
    ) -> inference_pb2.InferenceBatchResponse: ...


@dataclass
class _Waiting:
    request: inference_pb2.InferenceRequest
    deadline: float
    answer: asyncio.Future[inference_pb2.InferenceResponse]


@dataclass
class _Lane:
    """The calls to one model version: how many are in flight, which rows wait."""

    in_flight: int = 0
    waiting: list[_Waiting] = field(default_factory=list)


class InferenceCoalescer:
    def __init__(
        self, calls: InferenceCalls, *, max_in_flight: int = MAX_IN_FLIGHT, max_rows: int = MAX_ROWS
    ) -> None:
        self._calls = calls
        self._max_in_flight = max_in_flight
        self._max_rows = max_rows
        self._lanes: dict[tuple[str, str], _Lane] = {}
        self._batches: set[asyncio.Task[None]] = set()

    async def predict(
        self, request: inference_pb2.InferenceRequest, budget_s: float
    ) -> inference_pb2.InferenceResponse:
        """The answer to one row, as `InferencePool.predict` gives it (its errors too)."""
        if not self._max_in_flight:
            return await self._calls.predict(request, budget_s)
        key = (request.model.model, request.model.version)
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane()
        if lane.in_flight < self._max_in_flight and not lane.waiting:
            lane.in_flight += 1
            try:
                return await self._calls.predict(request, budget_s)
            finally:
                self._ended(key, lane)
        answer: asyncio.Future[inference_pb2.InferenceResponse] = (
            asyncio.get_running_loop().create_future()
        )
        lane.waiting.append(_Waiting(request, time.monotonic() + budget_s, answer))
        return await answer

    async def close(self) -> None:
        """Wait for the batches in flight (their callers are waiting for them)."""
        while self._batches:
            await asyncio.gather(*self._batches, return_exceptions=True)

    def _ended(self, key: tuple[str, str], lane: _Lane) -> None:
        """A call of `lane` ended: the rows that wait go next, together."""
        lane.in_flight -= 1
        if lane.waiting:
            batch = lane.waiting[: self._max_rows]
            del lane.waiting[: self._max_rows]
            lane.in_flight += 1
            task = asyncio.create_task(self._batch(key, lane, batch), name="coalesced inference")
            self._batches.add(task)
            task.add_done_callback(self._batches.discard)
        elif not lane.in_flight:
            del self._lanes[key]  # no lane kept per model version ever called

    async def _batch(self, key: tuple[str, str], lane: _Lane, batch: list[_Waiting]) -> None:
        try:
            batch = [row for row in batch if not row.answer.done()]  # callers gone
            if batch:
                latest = max(row.deadline for row in batch)
                together = [row for row in batch if row.deadline >= latest - DEADLINE_SLACK_S]
                alone = [row for row in batch if row.deadline < latest - DEADLINE_SLACK_S]
                await asyncio.gather(
                    self._together(together, latest), *(self._alone(row) for row in alone)
                )
        finally:
            for row in batch:
                if not row.answer.done():  # cancelled: nobody will answer it
                    row.answer.cancel()
            self._ended(key, lane)

    async def _together(self, rows: list[_Waiting], deadline: float) -> None:
        if len(rows) == 1:
            await self._alone(rows[0])
            return
        model = rows[0].request.model
        request = inference_pb2.InferenceBatchRequest(
            model=model,
            request_ids=[row.request.request_id for row in rows],
            rows=[row.request.row for row in rows],
        )
        try:
            response = await self._calls.predict_batch(request, deadline - time.monotonic())
        except grpc.aio.AioRpcError:  # refused: each row on its own, with its own status
            await asyncio.gather(*(self._alone(row) for row in rows))
            return
        except Exception as error:  # noqa: BLE001  # no endpoint answered: each row's failure
            for row in rows:
                settle(row.answer, error=error)
            return
        if len(response.outputs) != len(rows):
            await asyncio.gather(*(self._alone(row) for row in rows))
            return
        for row, output in zip(rows, response.outputs, strict=True):
            settle(
                row.answer,
                inference_pb2.InferenceResponse(
                    request_id=row.request.request_id,
                    model=response.model,
                    output=output,
                    latency_us=response.latency_us,
                ),
            )

    async def _alone(self, row: _Waiting) -> None:
        try:
            response = await self._calls.predict(row.request, row.deadline - time.monotonic())
        except Exception as error:  # noqa: BLE001  # the row's own failure, passed on as it is
            settle(row.answer, error=error)
            return
        settle(row.answer, response)
