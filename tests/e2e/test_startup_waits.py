"""A service on its own, started before what it needs: it waits (health NOT_SERVING, a log
line naming what it waits for and the variable that says where) and becomes SERVING once
the broker is up, without a restart. What waiting cannot fix ends it in one line."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from driftloop.kafka.local_broker import LocalBroker, find_kafka_libs, free_port
from driftloop.kit.grpc_client import open_channel
from tests.conftest import REPO, unique_name


def shadow_environment(tmp_path: Path, bootstrap: str, port: int) -> dict[str, str]:
    env = {
        **os.environ,
        "DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "DRIFTLOOP_KAFKA_TOPIC_PREFIX": unique_name("waits") + ".",
        "DRIFTLOOP_CLICKHOUSE_PATH": str(tmp_path / "clickhouse"),
        "DRIFTLOOP_SHADOW_PORT": str(port),
        "DRIFTLOOP_SHADOW_INFERENCE_TARGETS": "127.0.0.1:1",
        "DRIFTLOOP_LOG_LEVEL": "INFO",
        "DRIFTLOOP_LOG_FORMAT": "json",
    }
    env.pop("DRIFTLOOP_CLICKHOUSE_URL", None)
    return env


class Logged:
    """The JSON log lines of a child process, as they come."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.lines: list[dict[str, Any]] = []
        self.changed = asyncio.Event()
        assert process.stdout is not None
        self._task = asyncio.create_task(self._read(process.stdout))

    async def _read(self, stream: asyncio.StreamReader) -> None:
        async for raw in stream:
            try:
                self.lines.append(json.loads(raw))
            except ValueError:
                continue
            self.changed.set()

    async def until(self, text: str, seconds: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + seconds
        while True:
            for line in self.lines:
                if text in str(line.get("message", "")):
                    return line
            assert time.monotonic() < deadline, f"no log line with {text!r}: {self.lines}"
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), deadline - time.monotonic())

    async def close(self) -> None:
        await self._task


async def health_status(target: str) -> int | None:
    """The service's health status, None when nothing answers on the port."""
    async with open_channel(target) as channel:
        stub: Any = health_pb2_grpc.HealthStub(channel)
        try:
            reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
        except Exception:  # noqa: BLE001  # not listening (yet, or for a moment)
            return None
    return int(reply.status)


async def until_status(target: str, wanted: int, process: Any, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while await health_status(target) != wanted:
        assert process.returncode is None, f"the service exited with {process.returncode}"
        assert time.monotonic() < deadline, f"{target} never reached status {wanted}"
        await asyncio.sleep(0.2)


@pytest.fixture
async def broker_later(tmp_path: Path) -> AsyncIterator[LocalBroker]:
    """A broker on a chosen port, not started: the test starts it when it wants."""
    broker = LocalBroker(find_kafka_libs(REPO), tmp_path / "kafka", port=free_port())
    yield broker
    await asyncio.to_thread(broker.stop)


async def test_a_service_started_before_its_broker_serves_once_the_broker_is_up(
    broker_later: LocalBroker, tmp_path: Path
) -> None:
    port = free_port()
    target = f"127.0.0.1:{port}"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "driftloop.shadow",
        env=shadow_environment(tmp_path, broker_later.bootstrap_servers, port),
        stdout=asyncio.subprocess.PIPE,
    )
    logged = Logged(process)
    try:
        waiting = await logged.until("waiting for the Kafka broker")
        assert waiting["message"].startswith(
            f"waiting for the Kafka broker at {broker_later.bootstrap_servers} "
            "(DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS): "
        )
        assert await health_status(target) == health_pb2.HealthCheckResponse.NOT_SERVING

        await asyncio.to_thread(broker_later.start)
        await until_status(target, health_pb2.HealthCheckResponse.SERVING, process, 90)
        await logged.until("the Kafka broker is up")
        assert process.returncode is None  # the same process: no restart
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 60)
        await logged.close()
    assert code == 0


async def test_a_folder_another_process_holds_ends_the_start_in_one_line(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "clickhouse"
    folder.mkdir()
    with (folder / ".driftloop.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running service holds it
        env = shadow_environment(tmp_path, "127.0.0.1:1", free_port())
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "driftloop.shadow",
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    lines = stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"driftloop.shadow: the embedded ClickHouse folder {folder} is")
    assert "`driftloop up`" in lines[0]
    assert "DRIFTLOOP_CLICKHOUSE_URL" in lines[0]


async def test_help_lists_the_variables_of_the_service() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "driftloop.gateway",
        "--help",
        stdout=asyncio.subprocess.PIPE,
    )
    stdout, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0
    text = stdout.decode()
    assert text.startswith("usage: python -m driftloop.gateway")
    assert "DRIFTLOOP_GATEWAY_REGISTRY_TARGET" in text
    assert "DRIFTLOOP_KAFKA_SECURITY_PROTOCOL" in text
