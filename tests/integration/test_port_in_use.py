"""A port another process listens on is a CannotStart naming the port's variable, and the
standalone composition stops what it had started (the services before, and the failing
service's own Kafka clients and tasks)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import SecretStr

from driftloop.cli.stack import Ports, running_services
from driftloop.clickhouse.client import ClickHouse
from driftloop.kit.errors import CannotStart
from driftloop.kit.grpc_server import GrpcServer
from driftloop.kit.settings import GrpcServerSettings, KafkaSettings
from driftloop.models.artifacts import LocalArtifactStore


@pytest.mark.parametrize("field", ["port", "metrics_port"])
async def test_a_taken_port_is_one_line_naming_its_variable(held_port: int, field: str) -> None:
    server = GrpcServer("test", GrpcServerSettings().model_copy(update={field: held_port}))
    with pytest.raises(CannotStart) as raised:
        await server.start()
    variable = f"DRIFTLOOP_SERVICE_{field.upper()}"
    assert str(raised.value) == (
        f"cannot listen on 127.0.0.1:{held_port} ({variable}): Address already in use "
        f"(stop the process that listens there, or set {variable} to another port)"
    )


async def test_an_address_not_of_this_machine_is_named_too() -> None:
    server = GrpcServer("test", GrpcServerSettings(host="192.0.2.1", port=50999))
    with pytest.raises(CannotStart, match=r"192\.0\.2\.1:50999 \(DRIFTLOOP_SERVICE_PORT\): "):
        await server.start()


async def test_the_stack_stops_what_started_when_the_last_port_is_taken(
    kafka_settings: KafkaSettings, clickhouse: ClickHouse, tmp_path: Path, held_port: int
) -> None:
    assert kafka_settings.bootstrap_servers is not None
    free = Ports.free()
    ports = Ports(held_port, free.inference, free.drift, free.shadow, free.retrainer)
    before = asyncio.all_tasks()
    with pytest.raises(CannotStart, match="DRIFTLOOP_GATEWAY_PORT"):
        async with running_services(
            kafka_settings,
            kafka_settings.bootstrap_servers,
            clickhouse,
            LocalArtifactStore(tmp_path / "artifacts"),
            SecretStr("token"),
            ports=ports,
        ):
            pytest.fail("the gateway started on a taken port")
    # The gateway's producers and log tasks, and the four services started before it, are
    # stopped: no task of theirs is left running.
    left = [task for task in asyncio.all_tasks() - before if not task.done()]
    assert left == []
