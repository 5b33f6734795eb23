"""The retrainer's adapter to the gateway: asking for the rollout of a retrained version."""

from __future__ import annotations

import grpc

from driftloop.kit.grpc_client import admin_metadata, upstream_error
from driftloop.v1 import events_pb2, gateway_pb2, gateway_pb2_grpc, retrainer_pb2

STRATEGIES = {
    retrainer_pb2.ROLLOUT_ON_PASS_CANARY: gateway_pb2.ROLLOUT_STRATEGY_CANARY,
    retrainer_pb2.ROLLOUT_ON_PASS_BLUE_GREEN: gateway_pb2.ROLLOUT_STRATEGY_BLUE_GREEN,
    retrainer_pb2.ROLLOUT_ON_PASS_SHADOW_THEN_CANARY: gateway_pb2.ROLLOUT_STRATEGY_CANARY,
}


class GatewayRollouts:
    def __init__(self, channel: grpc.aio.Channel, admin_token: str, timeout_s: float) -> None:
        self._stub = gateway_pb2_grpc.GatewayStub(channel)
        self._metadata = admin_metadata(admin_token, actor="retrainer")
        self._timeout = timeout_s

    async def start(
        self, model: str, version: str, plan: retrainer_pb2.RolloutPlan, reason: str
    ) -> None:
        steps = [
            events_pb2.CanaryStep(
                weight_bp=percent * 100,
                min_requests=plan.min_requests,
                min_duration_s=plan.min_duration_s,
            )
            for percent in plan.steps_percent
        ]
        try:
            await self._stub.StartRollout(
                gateway_pb2.StartRolloutRequest(
                    model=model,
                    candidate_version=version,
                    strategy=STRATEGIES[plan.on_pass],
                    steps=steps,
                    reason=reason,
                    shadow_first=gateway_pb2.ShadowFirst(
                        min_compared=plan.shadow_min_compared,
                        min_labelled=plan.shadow_min_labelled,
                    )
                    if plan.on_pass == retrainer_pb2.ROLLOUT_ON_PASS_SHADOW_THEN_CANARY
                    else None,
                ),
                timeout=self._timeout,
                metadata=self._metadata,
            )
        except grpc.aio.AioRpcError as error:
            raise upstream_error(
                error, f"asking the gateway to roll out {model} v{version}"
            ) from None
