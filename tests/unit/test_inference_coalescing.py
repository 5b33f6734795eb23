"""The gateway's calls to inference, coalesced into PredictBatch calls when they pile up:
below the in-flight limit each row is a Predict of its own; rows that arrive beyond it
share one PredictBatch per model version, each with its own answer; a batch inference
refuses is retried row by row (only the bad row fails, with its own status); a batch no
endpoint answers fails each of its rows; a row with a much earlier deadline goes alone."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from driftloop.client.coalescing import InferenceCoalescer
from driftloop.kit.errors import Unavailable
from driftloop.v1 import common_pb2, inference_pb2

BAD = -1.0  # a row inference refuses (INVALID_ARGUMENT), alone or in a batch


def request(x: float, version: str = "1") -> inference_pb2.InferenceRequest:
    return inference_pb2.InferenceRequest(
        model=common_pb2.ModelRef(model="m", version=version),
        request_id=f"r{x:g}",
        row=common_pb2.Row(features={"x": common_pb2.FeatureValue(number=x)}),
    )


def refused() -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        grpc.StatusCode.INVALID_ARGUMENT, grpc.aio.Metadata(), grpc.aio.Metadata(), "bad row"
    )


class Inference:
    """Answers value = 10 x; the first call waits on a gate; records every call as
    ("one" | "batch", version, [x...], budget)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, list[float], float]] = []
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()
        self.down = False

    async def _enter(self) -> None:
        self.entered.set()
        await self.gate.wait()
        if self.down:
            raise Unavailable("no inference endpoint answered (UNAVAILABLE: down)")

    async def predict(
        self, request: inference_pb2.InferenceRequest, budget_s: float
    ) -> inference_pb2.InferenceResponse:
        x = request.row.features["x"].number
        self.calls.append(("one", request.model.version, [x], budget_s))
        await self._enter()
        if x == BAD:
            raise refused()
        return inference_pb2.InferenceResponse(
            request_id=request.request_id,
            model=request.model,
            output=common_pb2.Output(value=10 * x),
        )

    async def predict_batch(
        self, request: inference_pb2.InferenceBatchRequest, budget_s: float
    ) -> inference_pb2.InferenceBatchResponse:
        xs = [row.features["x"].number for row in request.rows]
        self.calls.append(("batch", request.model.version, xs, budget_s))
        await self._enter()
        if BAD in xs:
            raise refused()
        return inference_pb2.InferenceBatchResponse(
            model=request.model, outputs=[common_pb2.Output(value=10 * x) for x in xs]
        )


async def held(
    inference: Inference, coalescer: InferenceCoalescer, *xs: float, budget_s: float = 5.0
) -> list[asyncio.Task[inference_pb2.InferenceResponse]]:
    """Requests for `xs`, the first one's call in flight (held at the gate), the rest queued."""
    first = asyncio.create_task(coalescer.predict(request(xs[0]), budget_s))
    await inference.entered.wait()
    rest = [asyncio.create_task(coalescer.predict(request(x), budget_s)) for x in xs[1:]]
    for _ in xs:
        await asyncio.sleep(0)  # each task runs to its wait (no timing: the gate holds)
    return [first, *rest]


async def test_below_the_limit_each_row_is_a_call_of_its_own() -> None:
    inference = Inference()
    inference.gate.set()
    coalescer = InferenceCoalescer(inference, max_in_flight=2)
    answers = await asyncio.gather(*(coalescer.predict(request(x), 5.0) for x in (1.0, 2.0)))
    assert [a.output.value for a in answers] == [10.0, 20.0]
    assert [(kind, xs) for kind, _, xs, _ in inference.calls] == [("one", [1.0]), ("one", [2.0])]


async def test_a_limit_of_zero_is_no_coalescing_every_row_a_call_of_its_own() -> None:
    inference = Inference()
    coalescer = InferenceCoalescer(inference, max_in_flight=0)
    tasks = await held(inference, coalescer, 0.0, 1.0, 2.0)
    inference.gate.set()
    answers = await asyncio.gather(*tasks)
    assert [a.output.value for a in answers] == [0.0, 10.0, 20.0]
    assert [(kind, xs) for kind, _, xs, _ in inference.calls] == [
        ("one", [0.0]),
        ("one", [1.0]),
        ("one", [2.0]),
    ]


async def test_rows_arriving_beyond_the_limit_share_one_batch_each_with_its_answer() -> None:
    inference = Inference()
    coalescer = InferenceCoalescer(inference, max_in_flight=1, max_rows=3)
    tasks = await held(inference, coalescer, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0)
    inference.gate.set()
    answers = await asyncio.gather(*tasks)
    assert [a.output.value for a in answers] == [0.0, 10.0, 20.0, 30.0, 40.0, 50.0]
    assert [a.request_id for a in answers] == ["r0", "r1", "r2", "r3", "r4", "r5"]
    assert [a.model.version for a in answers] == ["1"] * 6
    assert [(kind, xs) for kind, _, xs, _ in inference.calls] == [
        ("one", [0.0]),
        ("batch", [1.0, 2.0, 3.0]),
        ("batch", [4.0, 5.0]),
    ]
    # Idle again: the next row is a call of its own, at once.
    assert (await coalescer.predict(request(9.0), 5.0)).output.value == 90.0
    assert inference.calls[-1][0] == "one"
    await coalescer.close()


async def test_versions_never_share_a_batch() -> None:
    inference = Inference()
    coalescer = InferenceCoalescer(inference, max_in_flight=1)
    first = asyncio.create_task(coalescer.predict(request(0.0, "1"), 5.0))
    await inference.entered.wait()
    other = [asyncio.create_task(coalescer.predict(request(x, "2"), 5.0)) for x in (1.0, 2.0)]
    same = [asyncio.create_task(coalescer.predict(request(x, "1"), 5.0)) for x in (3.0, 4.0)]
    await asyncio.sleep(0)
    inference.gate.set()
    await asyncio.gather(first, *other, *same)
    assert sorted((kind, version, xs) for kind, version, xs, _ in inference.calls) == [
        ("batch", "1", [3.0, 4.0]),
        ("one", "1", [0.0]),
        ("one", "2", [1.0]),
        ("one", "2", [2.0]),
    ]


async def test_a_refused_batch_is_retried_row_by_row_and_only_the_bad_row_fails() -> None:
    inference = Inference()
    coalescer = InferenceCoalescer(inference, max_in_flight=1)
    tasks = await held(inference, coalescer, 0.0, 1.0, BAD, 3.0)
    inference.gate.set()
    answers = await asyncio.gather(*tasks, return_exceptions=True)
    assert [a.output.value for a in answers if isinstance(a, inference_pb2.InferenceResponse)] == [
        0.0,
        10.0,
        30.0,
    ]
    failure = answers[2]
    assert isinstance(failure, grpc.aio.AioRpcError)
    assert failure.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [(kind, xs) for kind, _, xs, _ in inference.calls] == [
        ("one", [0.0]),
        ("batch", [1.0, BAD, 3.0]),
        ("one", [1.0]),
        ("one", [BAD]),
        ("one", [3.0]),
    ]


async def test_a_batch_no_endpoint_answers_fails_each_of_its_rows() -> None:
    inference = Inference()
    coalescer = InferenceCoalescer(inference, max_in_flight=1)
    tasks = await held(inference, coalescer, 0.0, 1.0, 2.0)
    inference.down = True
    inference.gate.set()
    answers = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(a, Unavailable) for a in answers)
    assert [kind for kind, _, _, _ in inference.calls] == ["one", "batch"]  # no retries


async def test_a_row_with_a_much_earlier_deadline_goes_alone_within_its_own_budget() -> None:
    inference = Inference()
    coalescer = InferenceCoalescer(inference, max_in_flight=1)
    first = asyncio.create_task(coalescer.predict(request(0.0), 5.0))
    await inference.entered.wait()
    late = [asyncio.create_task(coalescer.predict(request(x), 5.0)) for x in (1.0, 2.0)]
    hurried = asyncio.create_task(coalescer.predict(request(3.0), 0.5))
    await asyncio.sleep(0)
    inference.gate.set()
    await asyncio.gather(first, *late, hurried)
    calls = {tuple(xs): (kind, budget) for kind, _, xs, budget in inference.calls}
    assert calls[(1.0, 2.0)][0] == "batch"
    assert calls[(1.0, 2.0)][1] > 5.0 - 1.0
    assert calls[(3.0,)][0] == "one"
    assert 0 < calls[(3.0,)][1] <= 0.5


async def test_a_caller_that_gives_up_leaves_the_others_answered() -> None:
    inference = Inference()
    coalescer = InferenceCoalescer(inference, max_in_flight=1)
    tasks = await held(inference, coalescer, 0.0, 1.0, 2.0)
    tasks[1].cancel()
    inference.gate.set()
    answers = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(answers[1], asyncio.CancelledError)
    assert [answers[0].output.value, answers[2].output.value] == [0.0, 20.0]  # type: ignore[union-attr]
    assert [xs for _, _, xs, _ in inference.calls] == [[0.0], [2.0]]  # the rest went alone
    with pytest.raises(asyncio.CancelledError):
        await tasks[1]
