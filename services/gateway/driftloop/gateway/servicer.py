"""The Gateway gRPC adapter."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Literal

from driftloop.gateway.rollouts import Rollouts, RolloutStart
from driftloop.gateway.serving import PredictionService, Served
from driftloop.kit.errors import InvalidArgument
from driftloop.kit.handlers import actor_of
from driftloop.kit.names import check_name
from driftloop.v1 import events_pb2, gateway_pb2, gateway_pb2_grpc

BATCH_CONCURRENCY = 32


def _response(model: str, served: Served) -> gateway_pb2.PredictResponse:
    return gateway_pb2.PredictResponse(
        request_id=served.request_id,
        model=model,
        version=served.version,
        variant=served.variant,
        output=served.output,
    )


def _rollout_start(request: gateway_pb2.StartRolloutRequest) -> RolloutStart:
    if request.strategy == gateway_pb2.ROLLOUT_STRATEGY_CANARY:
        strategy: Literal["canary", "blue_green"] = "canary"
    elif request.strategy == gateway_pb2.ROLLOUT_STRATEGY_BLUE_GREEN:
        strategy = "blue_green"
    else:
        raise InvalidArgument("strategy", "BLUE_GREEN or CANARY")
    return RolloutStart(
        model=request.model,
        candidate_version=request.candidate_version,
        strategy=strategy,
        steps=tuple(request.steps),
        hold_s=request.hold_s,
        reason=request.reason,
        shadow_min_compared=request.shadow_first.min_compared,
        shadow_min_labelled=request.shadow_first.min_labelled,
    )


class GatewayServicer(gateway_pb2_grpc.GatewayServicer):
    def __init__(self, serving: PredictionService, rollouts: Rollouts, max_batch: int) -> None:
        self._serving = serving
        self._rollouts = rollouts
        self._max_batch = max_batch

    async def _one(
        self, request: gateway_pb2.PredictRequest, context: Any, model: str = ""
    ) -> gateway_pb2.PredictResponse:
        model = model or request.model
        check_name("model", model, "model name")
        served = await self._serving.predict(
            model, request.request_id, request.entity_key, request.row, context.time_remaining()
        )
        return _response(model, served)

    async def Predict(
        self, request: gateway_pb2.PredictRequest, context: Any
    ) -> gateway_pb2.PredictResponse:
        return await self._one(request, context)

    async def PredictBatch(
        self, request: gateway_pb2.PredictBatchRequest, context: Any
    ) -> gateway_pb2.PredictBatchResponse:
        if len(request.requests) > self._max_batch:
            raise InvalidArgument(
                "requests", f"{len(request.requests)} is more than the limit of {self._max_batch}"
            )
        limit = asyncio.Semaphore(BATCH_CONCURRENCY)

        async def one(item: gateway_pb2.PredictRequest) -> gateway_pb2.PredictResponse:
            async with limit:
                return await self._one(item, context, item.model or request.model)

        # Each row is routed and logged on its own; they go to inference side by side.
        responses = await asyncio.gather(*(one(item) for item in request.requests))
        return gateway_pb2.PredictBatchResponse(responses=responses)

    async def PredictStream(
        self, requests: AsyncIterator[gateway_pb2.PredictRequest], context: Any
    ) -> AsyncIterator[gateway_pb2.PredictResponse]:
        async for request in requests:
            yield await self._one(request, context)

    async def GetRoutingPolicy(
        self, request: gateway_pb2.GetRoutingPolicyRequest, context: Any
    ) -> events_pb2.RoutingPolicy:
        return await self._rollouts.served(request.model)

    async def SetRoutingPolicy(
        self, request: gateway_pb2.SetRoutingPolicyRequest, context: Any
    ) -> events_pb2.RoutingPolicy:
        return await self._rollouts.set_policy(
            request.policy, request.expected_revision, actor_of(context)
        )

    async def StartRollout(
        self, request: gateway_pb2.StartRolloutRequest, context: Any
    ) -> events_pb2.RoutingPolicy:
        return await self._rollouts.start(_rollout_start(request), actor_of(context))

    async def Promote(
        self, request: gateway_pb2.PromoteRequest, context: Any
    ) -> events_pb2.RoutingPolicy:
        return await self._rollouts.promote(request.model, request.reason, actor_of(context))

    async def Rollback(
        self, request: gateway_pb2.RollbackRequest, context: Any
    ) -> events_pb2.RoutingPolicy:
        return await self._rollouts.rollback(request.model, request.reason, actor_of(context))
