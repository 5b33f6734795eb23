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
import signal
import sys
from typing import Any

import grpc

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
    """Predict registered as grpc's generated code registers a servicer's methods."""
    server = grpc.aio.server()
    handlers = {
        "Predict": grpc.unary_unary_rpc_method_handler(
            predict,
            request_deserializer=inference_pb2.InferenceRequest.FromString,
            response_serializer=inference_pb2.InferenceResponse.SerializeToString,
        )
    }
    service = "driftloop.v1.InferenceService"
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
    server.add_registered_method_handlers(service, handlers)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    await server.stop(1)


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
