"""The ceiling of bench/inference_vs_mlserver.py: a bare grpc.aio server, nothing else.

    python bench/peers/echo_side.py PORT

Serves /driftloop.v1.InferenceService/Predict with driftloop's own message classes: it
parses each InferenceRequest and answers an InferenceResponse of the same shape as the
inference service's for a binary model (the request's id and model echoed, an output with
kind, value, label and two class probabilities, a latency), and does nothing else: no
handler wrapping, metrics, validation, model lookup or prediction. What a Python gRPC
server costs per call on this machine is what this process costs; driftloop's share of
its throughput is how much of the machine the rest of the inference service leaves.
Runs in driftloop's environment (it imports driftloop.v1, the generated code only).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

sys.path.append(str(Path(__file__).resolve().parents[1]))  # bench/: peers.* when run as a script

from peers.bare_server import serve_predict

from driftloop.v1 import common_pb2, inference_pb2

OUTPUT = common_pb2.Output(
    kind=common_pb2.OUTPUT_KIND_BINARY,
    value=0.006308055920,
    label="0",
    probabilities={"1": 0.006308055920, "0": 0.993691944080},
)


async def predict(
    request: inference_pb2.InferenceRequest, context: Any
) -> inference_pb2.InferenceResponse:
    return inference_pb2.InferenceResponse(
        request_id=request.request_id, model=request.model, output=OUTPUT, latency_us=4
    )


async def serve(port: int) -> None:
    await serve_predict(
        port,
        "driftloop.v1.InferenceService",
        predict,
        inference_pb2.InferenceRequest,
        inference_pb2.InferenceResponse,
    )


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
