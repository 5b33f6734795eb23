"""The Python client for people: typed errors from real services (the field the server
named, the service and its variable), the blocking Client, configuration from the
environment, and which calls are retried when a service is unavailable."""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path
from typing import Any

import grpc
import pytest
from pydantic import SecretStr

from driftloop.client import Client, ClientSettings, DriftloopClient
from driftloop.client.errors import InvalidArgument, NotFound, RpcError, Unavailable
from driftloop.kafka.local_broker import free_port
from tests.integration.stack import TOKEN, Stack
from tests.unit.test_retries import Flaky


def settings_for(stack: Stack, **overrides: Any) -> ClientSettings:
    return ClientSettings(
        registry_target=stack.registry_target,
        inference_target=f"127.0.0.1:{stack.inference.port}",
        admin_token=SecretStr(TOKEN),
        **overrides,
    )


async def test_errors_carry_their_status_the_field_and_the_service(stack: Stack) -> None:
    version = await stack.register_linear(1)
    async with DriftloopClient(settings_for(stack)) as client:
        with pytest.raises(NotFound) as missing:
            await client.get_version("nobody", "1")
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND  # still an AioRpcError
        assert missing.value.service == "registry" and missing.value.target == stack.registry_target
        row = {f"x{i}": 0.5 for i in range(6)} | {"plan": "pro", "region": "north", "x3": "oops"}
        with pytest.raises(InvalidArgument) as refused:
            await client.predict("churn", version, row)
        assert refused.value.field == "row.x3", refused.value
        assert str(refused.value).startswith("inference at 127.0.0.1:")
        with pytest.raises(grpc.aio.AioRpcError):  # code written against raw errors still works
            await client.get_version("nobody", "1")


async def test_the_blocking_client_is_the_same_api(stack: Stack) -> None:
    version = await stack.register_linear(2)
    await stack.champion(version)

    def use() -> tuple[str, str, str]:
        with Client(settings_for(stack, actor="notebook")) as client:
            record = client.get_version("churn", "champion")
            move = client.set_alias("churn", "staging", version, reason="try")
            try:
                client.get_version("churn", "99")
            except NotFound as error:
                return record.version, move.actor, error.code().name
        raise AssertionError("no NotFound")

    assert await asyncio.to_thread(use) == (version, "notebook", "NOT_FOUND")


def test_the_blocking_client_has_every_method() -> None:
    asynchronous = {
        name
        for name, method in inspect.getmembers(DriftloopClient)
        if not name.startswith("_") and inspect.iscoroutinefunction(method)
    }
    assert asynchronous - set(dir(Client)) == set()
    assert Client.serve.__doc__ == DriftloopClient.serve.__doc__


def test_a_client_that_cannot_be_made_leaves_no_thread(tmp_path: Path) -> None:
    missing = tmp_path / "ca.pem"
    with pytest.raises(FileNotFoundError):
        Client(ClientSettings(tls_ca_file=missing))
    # the no_leaks fixture fails the test if the loop's thread is still there


def test_from_env_reads_the_cli_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    address = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("DRIFTLOOP_REGISTRY_TARGET", address)
    monkeypatch.setenv("DRIFTLOOP_RETRIES", "1")
    monkeypatch.setenv("DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    with Client.from_env() as client, pytest.raises(Unavailable) as down:
        client.list_versions("churn")
    assert down.value.variable == "DRIFTLOOP_REGISTRY_TARGET"
    assert f"registry unreachable at {address}" in str(down.value)


async def test_only_calls_safe_to_repeat_are_retried_and_only_on_unavailable() -> None:
    async with DriftloopClient(ClientSettings(retries=3)) as client:
        read = Flaky(failures=2)
        assert await client._call("registry", read, None, retry=True) == "answer"
        assert read.calls == 3
        write = Flaky(failures=2)
        with pytest.raises(Unavailable):
            await client._call("registry", write, None, retry=False)
        assert write.calls == 1
        refused = Flaky(failures=0, code=grpc.StatusCode.FAILED_PRECONDITION)
        with pytest.raises(RpcError) as error:
            await client._call("gateway", refused, None, retry=True)
        assert refused.calls == 1 and error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        down = Flaky(failures=10)
        with pytest.raises(Unavailable):
            await client._call("drift", down, None, retry=True)
        assert down.calls == 4  # the first attempt and three retries


async def test_the_gateway_predict_is_retried_only_with_a_request_id() -> None:
    async with DriftloopClient(ClientSettings(retries=2)) as client:
        flaky = Flaky(failures=2)  # the first serve fails once; the second fails, then works
        stub: Any = type("Stub", (), {"Predict": flaky})()
        client.gateway = stub
        with pytest.raises(Unavailable):
            await client.serve("churn", {"age": 1.0})
        assert flaky.calls == 1
        assert await client.serve("churn", {"age": 1.0}, request_id="r-1") == "answer"
        assert flaky.calls == 3
