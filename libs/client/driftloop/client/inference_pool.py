"""A pool of inference endpoints with failover: the gateway's and the shadow service's way
to call inference.

Calls go round-robin over the endpoints; an endpoint that answers UNAVAILABLE (or does
not answer in time) is skipped for a cool-off period and the call is retried on the next
one, within the caller's deadline. Any other status is the model's answer and is returned
as it is.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

from driftloop.kit.errors import Unavailable
from driftloop.kit.grpc_client import open_channel
from driftloop.v1 import inference_pb2, inference_pb2_grpc

RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


class Endpoint:
    def __init__(self, target: str, tls_ca_file: Path | None) -> None:
        self.target = target
        self.channel = open_channel(target, tls_ca_file=tls_ca_file)
        self.stub = inference_pb2_grpc.InferenceServiceStub(self.channel)
        self.down_until = 0.0


class InferencePool:
    def __init__(
        self, targets: Sequence[str], *, tls_ca_file: Path | None = None, cool_off_s: float = 2.0
    ) -> None:
        if not targets:
            raise ValueError("at least one inference endpoint is needed")
        self.endpoints = [Endpoint(target, tls_ca_file) for target in targets]
        self._next = itertools.cycle(range(len(self.endpoints)))
        self._cool_off = cool_off_s

    async def predict(
        self, request: inference_pb2.InferenceRequest, budget_s: float
    ) -> inference_pb2.InferenceResponse:
        response: inference_pb2.InferenceResponse = await self._failover(
            "Predict", request, budget_s
        )
        return response

    async def predict_batch(
        self, request: inference_pb2.InferenceBatchRequest, budget_s: float
    ) -> inference_pb2.InferenceBatchResponse:
        response: inference_pb2.InferenceBatchResponse = await self._failover(
            "PredictBatch", request, budget_s
        )
        return response

    async def _failover(
        self,
        method: str,
        request: inference_pb2.InferenceRequest | inference_pb2.InferenceBatchRequest,
        budget_s: float,
    ) -> Any:
        """`method`'s answer from the first endpoint that gives one within the budget."""
        deadline = time.monotonic() + budget_s
        last: grpc.aio.AioRpcError | None = None
        for endpoint in self._order():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                return await getattr(endpoint.stub, method)(request, timeout=remaining)
            except grpc.aio.AioRpcError as error:
                if error.code() not in RETRYABLE:
                    raise
                last = error
                endpoint.down_until = time.monotonic() + self._cool_off
        detail = f"{last.code().name}: {last.details()}" if last else "no time left"
        raise Unavailable(f"no inference endpoint answered ({detail})")

    def _order(self) -> list[Endpoint]:
        start = next(self._next)
        ordered = self.endpoints[start:] + self.endpoints[:start]
        now = time.monotonic()
        up = [e for e in ordered if e.down_until <= now]
        return up + [e for e in ordered if e.down_until > now]  # the cooling ones last

    async def close(self) -> None:
        for endpoint in self.endpoints:
            await endpoint.channel.close()
