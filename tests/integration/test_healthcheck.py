"""`python -m driftloop.kit.healthcheck`, the containers' health check, against a real
server: exit 0 only while the server says SERVING."""

from __future__ import annotations

import asyncio
import sys

from driftloop.kafka.local_broker import free_port
from driftloop.kit.grpc_server import GrpcServer
from driftloop.kit.settings import GrpcServerSettings


async def check(target: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "driftloop.kit.healthcheck",
        target,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, output.decode().strip()


async def test_the_health_check_follows_the_servers_state() -> None:
    server = GrpcServer("checked", GrpcServerSettings())
    await server.start()
    target = f"127.0.0.1:{server.port}"
    try:
        assert await check(target) == (1, f"{target} not serving")  # until set_ready
        await server.set_ready()
        assert await check(target) == (0, f"{target} serving")
    finally:
        await server.stop(0)
    code, output = await check(target)
    assert code == 1 and output == f"{target} down (UNAVAILABLE)"
    code, output = await check(f"127.0.0.1:{free_port()}")
    assert code == 1 and "down" in output


async def test_the_health_check_wants_one_target() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "driftloop.kit.healthcheck", stderr=asyncio.subprocess.PIPE
    )
    _, error = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2 and b"usage:" in error
