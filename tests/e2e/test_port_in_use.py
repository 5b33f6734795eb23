"""A port another process listens on: `driftloop up` and a service on its own stop in one
line naming the port and its variable, exit status 2, no traceback, and leave nothing
running (the local broker, the services started before, their Kafka clients)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import psutil

from driftloop.kafka.local_broker import free_port
from tests.e2e.test_up import SERVICES


def clean_environment() -> dict[str, str]:
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DRIFTLOOP_", "KAFKA_BOOTSTRAP"))
    }


def running_under(folder: Path) -> list[str]:
    """The processes whose command line names `folder` (`up` and the broker it started)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        command = " ".join(process.info["cmdline"] or [])
        if str(folder) in command:
            found.append(command)
    return found


async def run(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 180)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def test_up_with_a_service_port_taken_stops_everything_in_one_line(
    tmp_path: Path, held_port: int
) -> None:
    env = clean_environment() | {f"DRIFTLOOP_{name}_PORT": str(free_port()) for name in SERVICES}
    env["DRIFTLOOP_GATEWAY_PORT"] = str(held_port)  # the last to start: the others run by then
    data = tmp_path / "data"
    code, stdout, stderr = await run(
        env,
        "-m",
        "driftloop.cli",
        "up",
        "--data-dir",
        str(data),
        "--kafka-port",
        str(free_port()),
        "--controller-port",
        str(free_port()),
    )
    assert code == 2, (stdout, stderr)
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"driftloop: cannot listen on 127.0.0.1:{held_port} "), lines
    assert "DRIFTLOOP_GATEWAY_PORT" in lines[0] and "Address already in use" in lines[0]
    assert "stopping the local broker" in stdout  # it had started, and was stopped
    assert running_under(data) == []


async def test_a_service_on_its_own_with_its_port_taken_stops_in_one_line(
    held_port: int,
) -> None:
    env = clean_environment() | {
        "DRIFTLOOP_GATEWAY_PORT": str(held_port),
        "DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",  # never reached
    }
    code, stdout, stderr = await run(env, "-m", "driftloop.gateway")
    assert code == 2, (stdout, stderr)
    assert stderr.splitlines() == [
        f"driftloop.gateway: cannot listen on 127.0.0.1:{held_port} (DRIFTLOOP_GATEWAY_PORT): "
        "Address already in use (stop the process that listens there, or set "
        "DRIFTLOOP_GATEWAY_PORT to another port)"
    ]


async def test_a_metrics_port_taken_is_named_too(held_port: int) -> None:
    env = clean_environment() | {
        "DRIFTLOOP_GATEWAY_PORT": str(free_port()),
        "DRIFTLOOP_GATEWAY_METRICS_PORT": str(held_port),
        "DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
    }
    code, stdout, stderr = await run(env, "-m", "driftloop.gateway")
    assert code == 2, (stdout, stderr)
    lines = stderr.splitlines()
    assert len(lines) == 1 and "(DRIFTLOOP_GATEWAY_METRICS_PORT)" in lines[0], stderr
