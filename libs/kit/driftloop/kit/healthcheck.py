"""A service's gRPC health, asked the standard way (grpc.health.v1).

`python -m driftloop.kit.healthcheck HOST:PORT` is a container health check: it prints the
state and exits 0 only when the service is SERVING. It imports nothing but gRPC, so it is
cheap to run every few seconds (the full CLI's `driftloop status --service` does the same
from a shell)."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from driftloop.kit.grpc_client import open_channel

SERVING = "serving"


async def health(target: str, timeout_s: float = 2.0) -> str:
    """ "serving", "not serving" or "down (<status>)"."""
    async with open_channel(target) as channel:
        stub: Any = health_pb2_grpc.HealthStub(channel)  # the stubs type the sync client only
        try:
            reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=timeout_s)
        except grpc.aio.AioRpcError as error:
            return f"down ({error.code().name})"
    return SERVING if reply.status == health_pb2.HealthCheckResponse.SERVING else "not serving"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m driftloop.kit.healthcheck HOST:PORT", file=sys.stderr)
        return 2
    state = asyncio.run(health(argv[0]))
    print(f"{argv[0]} {state}")
    return 0 if state == SERVING else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
