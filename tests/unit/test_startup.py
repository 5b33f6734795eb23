"""Start-up waits: retried with backoff while a dependency is not up, said in the log,
health NOT_SERVING on the service's port meanwhile; what waiting cannot fix is raised."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import SecretStr

from driftloop.clickhouse.client import server_address, service_clickhouse
from driftloop.drift.config import SETTINGS_DOC as DRIFT
from driftloop.gateway.config import SETTINGS_DOC as GATEWAY
from driftloop.kafka.local_broker import free_port
from driftloop.kit.grpc_client import open_channel
from driftloop.kit.grpc_server import LIVENESS
from driftloop.kit.settings import ClickHouseSettings, GrpcServerSettings
from driftloop.kit.settings_doc import service_help
from driftloop.kit.startup import Backoff, Dependency, wait_for, waiting_health

BROKER = Dependency("the Kafka broker", "kafka:9092", "DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS")
QUICK = Backoff(first_s=0.001, max_s=0.002)


async def test_a_dependency_that_is_not_up_is_waited_for_and_named_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    attempts = 0

    async def connect() -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise ConnectionRefusedError("connection refused")
        return "connected"

    with caplog.at_level(logging.INFO, logger="driftloop.kit.startup"):
        assert await wait_for(BROKER, connect, retry_on=(OSError,), backoff=QUICK) == "connected"
    assert attempts == 3
    waits = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(waits) == 2
    assert waits[0].startswith(
        "waiting for the Kafka broker at kafka:9092 (DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS): "
        "ConnectionRefusedError: connection refused; next attempt in"
    )
    assert any(r.getMessage() == "the Kafka broker is up at kafka:9092" for r in caplog.records)


async def test_an_error_waiting_cannot_fix_is_raised_at_once() -> None:
    attempts = 0

    async def connect() -> None:
        nonlocal attempts
        attempts += 1
        raise PermissionError("wrong password")

    with pytest.raises(PermissionError):
        await wait_for(BROKER, connect, retry_on=(ConnectionError,), backoff=QUICK)
    assert attempts == 1


async def test_the_service_port_answers_not_serving_while_it_waits() -> None:
    port = free_port()
    settings = GrpcServerSettings(port=port)
    target = f"127.0.0.1:{port}"
    async with open_channel(target) as channel:
        health: Any = health_pb2_grpc.HealthStub(channel)
        async with waiting_health("drift", settings):
            reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
            # Alive all the same: a liveness probe must not restart a service that waits.
            alive = await health.Check(health_pb2.HealthCheckRequest(service=LIVENESS), timeout=5)
            assert alive.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE  # the port is free again


def test_a_clickhouse_address_in_the_log_has_no_password() -> None:
    assert server_address("https://admin:s3cret@ch.example:8443/db") == "https://ch.example:8443"
    assert server_address("http://ch:8123") == "http://ch:8123"


def test_a_service_help_lists_the_variables_that_service_reads() -> None:
    text = service_help(DRIFT, {"DRIFTLOOP_KAFKA_SASL_PASSWORD": "hunter2"})
    assert text.startswith("usage: python -m driftloop.drift")
    for variable in (
        "DRIFTLOOP_DRIFT_REGISTRY_TARGET",
        "DRIFTLOOP_DRIFT_PORT",
        "DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS",
        "DRIFTLOOP_KAFKA_SASL_MECHANISM",
        "DRIFTLOOP_CLICKHOUSE_URL",
        "DRIFTLOOP_ADMIN_TOKEN",
        "DRIFTLOOP_LOG_LEVEL",
    ):
        assert variable in text
    for foreign in ("DRIFTLOOP_GATEWAY_PORT", "DRIFTLOOP_KAFKA_LIBS", "DRIFTLOOP_ARTIFACTS_PATH"):
        assert foreign not in text
    assert "hunter2" not in text
    assert "DRIFTLOOP_CLICKHOUSE_URL" not in service_help(GATEWAY, {})


def test_a_service_help_does_not_import_the_cli() -> None:
    """A service's image has no CLI: its --help lists the settings with the kit alone."""
    code = (
        "import sys\n"
        "from driftloop.retrainer.__main__ import usage\n"
        "assert 'DRIFTLOOP_CODE_VERSION' in usage()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[:2] == ['driftloop', 'cli']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "[]"


async def test_a_clickhouse_server_that_is_not_up_is_waited_for_without_its_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()  # nothing listens there
    settings = ClickHouseSettings(url=SecretStr(f"http://admin:s3cret@127.0.0.1:{port}"))
    with caplog.at_level(logging.WARNING, logger="driftloop.kit.startup"):
        waiting = asyncio.create_task(service_clickhouse(settings))
        deadline = time.monotonic() + 30
        while not (ours := [r for r in caplog.records if r.name == "driftloop.kit.startup"]):
            assert not waiting.done(), waiting
            assert time.monotonic() < deadline, "no log line while waiting for ClickHouse"
            await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
    line = ours[0].getMessage()
    assert line.startswith(
        f"waiting for ClickHouse at http://127.0.0.1:{port} (DRIFTLOOP_CLICKHOUSE_URL): "
    )
    assert "s3cret" not in caplog.text
