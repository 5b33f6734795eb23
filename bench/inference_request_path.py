"""Benchmark: the inference service's own cost per Predict, without the transport.

    .venv/bin/python bench/inference_request_path.py [--calls 20000] [--rounds 6]

What driftloop adds to a gRPC call, measured in one process where no other server, client
or network stack takes a share: the Predict handler exactly as the server registers it
(wrapped by the kit: token check, body decoding, status mapping, metrics; then the
servicer: model lookup, protobuf to row, schema validation, the linear flavor's
prediction of a 20-feature row, the response), called with the encoded request and its
answer encoded, against the bare handler of bench/peers/echo_side.py (decode, answer a
response of the same shape, encode). CPU time per call (time.process_time, so other
processes on the machine count for little), the two alternating, best of --rounds.
bench/inference_vs_mlserver.py measures the same two over HTTP/2; this one says how much
of the difference is the service's Python and follows it from one change to the next.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from peers.echo_side import predict as bare_predict

from driftloop.inference.host import ModelHost
from driftloop.inference.servicer import InferenceServicer
from driftloop.kit.handlers import HandlerWrapper
from driftloop.models.artifacts import LocalArtifactStore
from driftloop.models.convert import row_to_proto
from driftloop.models.loading import VersionSpec
from driftloop.v1 import common_pb2, inference_pb2
from harness import plain_linear

FEATURES = 20
METHOD = "/driftloop.v1.InferenceService/Predict"


class OneVersion:
    """The registry's answer for the one version this benchmark serves."""

    def __init__(self, spec: VersionSpec) -> None:
        self._spec = spec

    async def describe(self, model: str, version_or_alias: str) -> VersionSpec:
        return self._spec


class Context:
    """What the wrapped handler asks of grpc's servicer context on a successful call."""

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return ()

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"


def handler(behavior: Callable[..., Awaitable[Any]]) -> Callable[[bytes, Any], Awaitable[Any]]:
    """`behavior` as the kit's GrpcServer registers it: wrapped, taking the body's bytes."""
    wrapped = HandlerWrapper(frozenset(), None).wrap(
        METHOD,
        grpc.unary_unary_rpc_method_handler(
            behavior,
            inference_pb2.InferenceRequest.FromString,
            inference_pb2.InferenceResponse.SerializeToString,
        ),
    )
    assert wrapped.unary_unary is not None
    return wrapped.unary_unary


async def main(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="driftloop-bench-") as folder:
        return await measure(args, LocalArtifactStore(Path(folder)))


async def measure(args: argparse.Namespace, store: LocalArtifactStore) -> int:
    rng = np.random.default_rng(7)
    names = [f"f{i}" for i in range(FEATURES)]
    model = plain_linear(names, list(rng.normal(size=FEATURES)), 0.1)
    schema = model.schema
    spec = VersionSpec("churn", "1", "linear", store.put(model.to_bytes()), schema, "binary")
    host = ModelHost(OneVersion(spec), store)
    await host.load("churn", "1")
    request = inference_pb2.InferenceRequest(
        model=common_pb2.ModelRef(model="churn", version="1"),
        row=row_to_proto(
            {name: float(x) for name, x in zip(names, rng.normal(size=FEATURES), strict=True)}
        ),
    )
    body = request.SerializeToString()
    encode = inference_pb2.InferenceResponse.SerializeToString
    context = Context()
    calls: dict[str, Callable[[Any, Any], Awaitable[Any]]] = {
        "driftloop": handler(InferenceServicer(host, 1000).Predict),
        "bare grpc.aio handler": bare_predict,
    }
    # The bare handler gets the decoded request, as grpc hands it over without a wrapper.
    decode = inference_pb2.InferenceRequest.FromString

    async def per_call(name: str) -> float:
        call = calls[name]
        bare = name != "driftloop"
        started = time.process_time()
        for _ in range(args.calls):
            encode(await call(decode(body) if bare else body, context))
        micros: float = (time.process_time() - started) / args.calls * 1e6
        return micros

    best = {name: float("inf") for name in calls}
    for _ in range(args.rounds):
        for name in calls:
            best[name] = min(best[name], await per_call(name))
    await host.close()
    ours, bare = best["driftloop"], best["bare grpc.aio handler"]
    print("| handler | CPU per call |\n|---|---|")
    for name, micros in best.items():
        print(f"| {name} | {micros:.1f} µs |")
    print(
        f"\ndriftloop's own cost per Predict: {ours - bare:.1f} µs "
        f"({ours / bare:.1f}x the bare handler's)"
    )
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=20_000, help="calls per round and handler")
    parser.add_argument("--rounds", type=int, default=6)
    sys.exit(asyncio.run(main(parser.parse_args())))
