"""The one registry client (driftloop.client.registry) as the services call it: requests
built once, a refusal as the domain error of the registry's status, the admin token on
admin calls only."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from pydantic import SecretStr

from driftloop.client.registry import RegistryClient, ServiceCall
from driftloop.inference.registry_client import RegistryVersions
from driftloop.kit.errors import ErrorCode, FailedPrecondition, NotFound, Upstream
from driftloop.kit.grpc_client import open_channel
from driftloop.kit.grpc_server import GrpcServer
from driftloop.kit.settings import GrpcServerSettings
from tests.integration.registry_stub import build_server

TOKEN = "registry-client-token"


@pytest.fixture
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    server: GrpcServer = build_server(GrpcServerSettings(admin_token=SecretStr(TOKEN)))
    await server.start()
    async with open_channel(f"127.0.0.1:{server.port}") as opened:
        yield opened
    await server.stop(0)


async def test_records_come_back_and_refusals_keep_their_status(
    channel: grpc.aio.Channel,
) -> None:
    registry = RegistryClient(channel, ServiceCall(5.0))
    record = await registry.get("churn", "champion")
    assert (record.model, record.version) == ("churn", "champion")  # the stub echoes
    with pytest.raises(Upstream) as missing:
        await registry.get("missing", "1")
    assert missing.value.code == ErrorCode.NOT_FOUND
    assert missing.value.message.startswith("the registry on missing:1: ")
    with pytest.raises(Upstream) as bad:
        await registry.get("two words", "1")
    assert bad.value.code == ErrorCode.INVALID_ARGUMENT
    with pytest.raises(Upstream) as bug:
        await registry.versions("churn")  # the stub's ListModelVersions is a bug
    assert bug.value.code == ErrorCode.INTERNAL


async def test_admin_calls_carry_the_token_and_reads_do_not_need_it(
    channel: grpc.aio.Channel,
) -> None:
    without = RegistryClient(channel, ServiceCall(5.0))
    with pytest.raises(Upstream) as refused:
        await without.set_alias("churn", "champion", "2", "1", "test")
    assert refused.value.code == ErrorCode.UNAUTHENTICATED
    admin = RegistryClient(channel, ServiceCall(5.0, TOKEN, actor="gateway"))
    with pytest.raises(Upstream) as answered:  # past the token check: the stub has no aliases
        await admin.set_alias("churn", "champion", "2", "1", "test")
    assert answered.value.code == ErrorCode.NOT_FOUND
    assert (await admin.register(await admin.get("churn", "1"))).version == "1"


async def test_the_inference_service_sees_missing_versions_and_refused_names(
    channel: grpc.aio.Channel,
) -> None:
    versions = RegistryVersions(RegistryClient(channel, ServiceCall(5.0)))
    with pytest.raises(NotFound):
        await versions.describe("missing", "1")
    with pytest.raises(FailedPrecondition, match="must not contain spaces"):
        await versions.describe("two words", "1")
