"""Benchmark: the gateway's own Python cost per Predict, without grpc or Kafka.

    .venv/bin/python bench/gateway_request_path.py [--calls 5000] [--rounds 5]

The Gateway servicer's Predict (policy, route, the inference call through the coalescer,
the traffic recorder, metrics, the prediction event with the request's features, the
shadow mirror, the response) called with a decoded 20-feature request, in one process:
inference answers at once (an in-memory double) and the two event buffers only queue (no
Kafka). CPU time per call (time.process_time, so other processes count for little), best
of --rounds, with no shadow and with a 100% shadow. bench/gateway_vs_direct.py measures
the whole hop; this one isolates driftloop's Python on the gateway's predict path.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from driftloop.client.coalescing import InferenceCoalescer
from driftloop.gateway.buffer import EventBuffer
from driftloop.gateway.canary import TrafficRecorder
from driftloop.gateway.champions import ServedPolicies
from driftloop.gateway.policies import PolicyBook
from driftloop.gateway.servicer import GatewayServicer
from driftloop.gateway.serving import PredictionService
from driftloop.v1 import common_pb2, events_pb2, gateway_pb2, inference_pb2

FEATURES = 20


class InstantInference:
    """Answers every row at once (the coalescer never has to batch)."""

    async def predict(
        self, request: inference_pb2.InferenceRequest, budget_s: float
    ) -> inference_pb2.InferenceResponse:
        return inference_pb2.InferenceResponse(
            request_id=request.request_id,
            model=request.model,
            output=common_pb2.Output(value=0.5, label="1"),
        )

    async def predict_batch(
        self, request: inference_pb2.InferenceBatchRequest, budget_s: float
    ) -> inference_pb2.InferenceBatchResponse:
        raise AssertionError("one call at a time: never a batch")


class NoKafka:
    async def enqueue(self, topic: str, key: str | bytes, event: Any) -> Any:
        raise AssertionError("the buffers are never started")


class FixedPolicies(ServedPolicies):
    def __init__(self, policy: events_pb2.RoutingPolicy) -> None:
        super().__init__(PolicyBook(), None)  # type: ignore[arg-type]  # never asked
        self._policy = policy

    async def policy(self, model: str) -> events_pb2.RoutingPolicy | None:
        return self._policy


class Context:
    def time_remaining(self) -> float | None:
        return None


async def per_call(shadow: bool, calls: int, rounds: int) -> float:
    """CPU microseconds per Predict, best of `rounds`."""
    policy = events_pb2.RoutingPolicy(model="bench", stable_version="1", revision=1)
    if shadow:
        policy.shadow.CopyFrom(events_pb2.ShadowPlan(versions=["1"], sample_bp=10_000))
    capacity = calls * (rounds + 1) * 2
    serving = PredictionService(
        InferenceCoalescer(InstantInference()),
        EventBuffer(NoKafka(), "predictions", capacity=capacity),
        EventBuffer(NoKafka(), "shadow", capacity=capacity),
        TrafficRecorder(),
        1.0,
        FixedPolicies(policy),
    )
    servicer = GatewayServicer(serving, None, 1000)  # type: ignore[arg-type]  # no rollouts
    row = common_pb2.Row(
        features={f"f{i}": common_pb2.FeatureValue(number=i / 10) for i in range(FEATURES)}
    )
    body = gateway_pb2.PredictRequest(model="bench", entity_key="user-1", row=row)
    encoded = body.SerializeToString()
    context = Context()

    async def run() -> float:
        started = time.process_time()
        for _ in range(calls):
            await servicer.Predict(gateway_pb2.PredictRequest.FromString(encoded), context)
        return time.process_time() - started

    await run()  # warm-up
    return min([await run() for _ in range(rounds)]) / calls * 1e6


async def main(args: argparse.Namespace) -> int:
    off = await per_call(False, args.calls, args.rounds)
    on = await per_call(True, args.calls, args.rounds)
    print("| gateway predict path, Python only | CPU per call |")
    print("|---|---|")
    print(f"| no shadow | {off:.1f} µs |")
    print(f"| 100% shadow | {on:.1f} µs |")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    sys.exit(asyncio.run(main(parser.parse_args())))
