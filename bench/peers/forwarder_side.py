"""The ceiling of bench/gateway_vs_direct.py: a bare grpc.aio forwarder, nothing else.

    python bench/peers/forwarder_side.py PORT INFERENCE_TARGET VERSION [--uvloop]
        [--server-option NAME=VALUE ...] [--channel-option NAME=VALUE ...]

Serves /driftloop.v1.Gateway/Predict with driftloop's own message classes: it parses each
PredictRequest, makes one unary Predict call with an InferenceRequest of the same model
(at VERSION) and row to the inference service at INFERENCE_TARGET over one persistent
channel, and answers a PredictResponse with the answer's request id, version and output.
Nothing else: no routing, prediction log, shadow mirror, metrics, handler wrapping,
validation, failover or coalescing. What any Python grpc.aio hop costs on this machine,
per call, is what this process costs; the gateway's hop beside it says how much of the
hop is ours.

The options are for trying what might make any grpc.aio hop cheaper (the benchmark runs
it without them): `--uvloop` runs the process on uvloop's event loop (uvloop must be
importable, e.g. from PYTHONPATH; it is no dependency of driftloop), `--server-option`
and `--channel-option` add grpc channel arguments (an integer value is passed as one).
Runs in driftloop's environment (it imports driftloop.v1, the generated code only).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import grpc

sys.path.append(str(Path(__file__).resolve().parents[1]))  # bench/: peers.* when run as a script

from peers.bare_server import serve_predict

from driftloop.v1 import common_pb2, gateway_pb2, inference_pb2, inference_pb2_grpc


def grpc_option(text: str) -> tuple[str, str | int]:
    """NAME=VALUE as a grpc channel argument; a value that is an integer is one."""
    name, _, value = text.partition("=")
    try:
        return name, int(value)
    except ValueError:
        return name, value


async def serve(args: argparse.Namespace) -> None:
    channel = grpc.aio.insecure_channel(args.inference, options=args.channel_option)
    stub = inference_pb2_grpc.InferenceServiceStub(channel)
    version = args.version

    async def predict(
        request: gateway_pb2.PredictRequest, context: Any
    ) -> gateway_pb2.PredictResponse:
        answer = await stub.Predict(
            inference_pb2.InferenceRequest(
                model=common_pb2.ModelRef(model=request.model, version=version),
                request_id=request.request_id,
                row=request.row,
            ),
            timeout=5,
        )
        return gateway_pb2.PredictResponse(
            request_id=answer.request_id,
            model=request.model,
            version=answer.model.version or version,
            variant="stable",
            output=answer.output,
        )

    await channel.channel_ready()
    await serve_predict(
        args.port,
        "driftloop.v1.Gateway",
        predict,
        gateway_pb2.PredictRequest,
        gateway_pb2.PredictResponse,
        args.server_option,
    )
    await channel.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("port", type=int)
    parser.add_argument("inference", help="the inference service's host:port")
    parser.add_argument("version", help="the model version every call asks for")
    parser.add_argument("--uvloop", action="store_true")
    parser.add_argument("--server-option", type=grpc_option, action="append", default=[])
    parser.add_argument("--channel-option", type=grpc_option, action="append", default=[])
    arguments = parser.parse_args()
    if arguments.uvloop:
        import uvloop  # type: ignore[import-not-found]  # no dependency: from PYTHONPATH

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(serve(arguments))
    else:
        asyncio.run(serve(arguments))
