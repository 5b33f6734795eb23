"""Bad input at every public and admin RPC gets a precise status, and the servers go on.

The registry, inference, gateway and drift services run as in production (real broker,
real ClickHouse engine). Named cases from the field first, then property-based fuzzing
(hypothesis) of every method of every service with random messages, mutated encodings
and arbitrary bytes: a caller's mistake is never UNKNOWN, INTERNAL or RESOURCE_EXHAUSTED,
no call logs a traceback, and every server still serves afterwards.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from hypothesis import HealthCheck, given, settings
from prometheus_client import REGISTRY
from pydantic import SecretStr

from driftloop.clickhouse.client import ClickHouse
from driftloop.drift.config import DriftSettings
from driftloop.drift.server import DriftService
from driftloop.kafka.producer import EventProducer
from driftloop.kafka.topics import TopicNames
from driftloop.kit.grpc_client import open_channel
from driftloop.oip.v2 import grpc_predict_v2_pb2 as oip_pb2
from driftloop.v1 import (
    common_pb2,
    drift_pb2,
    events_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    inference_pb2,
    inference_pb2_grpc,
    registry_pb2,
)
from driftloop.v1 import options_pb2 as _options  # registers the admin option
from tests.integration.stack import ADMIN, ROW, TOKEN, Stack, predict, set_policy, until
from tests.protobuf_strategies import bodies

NEVER_FOR_A_CALLER = {
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
EXAMPLES_PER_METHOD = 100


@dataclass
class Services:
    stack: Stack
    gateway: gateway_pb2_grpc.GatewayStub
    ports: dict[str, int]  # service full name -> port
    channels: dict[int, grpc.aio.Channel]


@pytest.fixture
async def services(stack: Stack, clickhouse: ClickHouse) -> AsyncIterator[Services]:
    assert stack.kafka.bootstrap_servers is not None
    drift = DriftService(
        DriftSettings(port=0, admin_token=SecretStr(TOKEN), registry_target=stack.registry_target),
        stack.kafka,
        stack.kafka.bootstrap_servers,
        clickhouse,
    )
    await drift.start()
    gateway = await stack.gateway()
    ports = {
        "driftloop.v1.ModelRegistry": int(stack.registry_target.rsplit(":", 1)[1]),
        "driftloop.v1.InferenceService": stack.inference.port,
        "driftloop.v1.Gateway": stack.gateways[-1].port,
        "inference.GRPCInferenceService": stack.gateways[-1].port,
        "driftloop.v1.DriftService": drift.port,
    }
    channels = {port: open_channel(f"127.0.0.1:{port}") for port in set(ports.values())}
    try:
        yield Services(stack, gateway, ports, channels)
    finally:
        for channel in channels.values():
            await channel.close()
        await drift.stop(0)


async def raw_call(
    channel: grpc.aio.Channel,
    method: MethodDescriptor,
    messages: list[bytes],
    metadata: tuple[tuple[str, str], ...] = (),
) -> grpc.aio.AioRpcError | None:
    """Call `method` with raw request bodies (no client-side serialisation)."""
    path = f"/{method.containing_service.full_name}/{method.name}"

    async def stream() -> AsyncIterator[bytes]:
        for body in messages:
            yield body

    try:
        if method.client_streaming and method.server_streaming:
            both: Any = channel.stream_stream(path)  # raw bytes: the stubs type no such call
            async for _ in both(stream(), timeout=10, metadata=metadata):
                pass
        elif method.client_streaming:
            upload: Any = channel.stream_unary(path)
            await upload(stream(), timeout=10, metadata=metadata)
        elif method.server_streaming:
            call: Any = channel.unary_stream(path)
            async for _ in call(messages[0], timeout=10, metadata=metadata):
                pass
        else:
            unary: Any = channel.unary_unary(path)
            await unary(messages[0], timeout=10, metadata=metadata)
    except grpc.aio.AioRpcError as error:
        return error
    return None


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        f"{record.name}: {record.getMessage()}"
        for record in caplog.records
        if record.exc_info
        or (record.levelno >= logging.ERROR and record.name.startswith("driftloop"))
    ]


async def test_an_undecodable_body_is_invalid_argument_logged_once_without_traceback(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    method = gateway_pb2.DESCRIPTOR.services_by_name["Gateway"].methods_by_name["Predict"]
    channel = services.channels[services.ports["driftloop.v1.Gateway"]]
    caplog.set_level(logging.INFO)
    for _ in range(20):
        error = await raw_call(channel, method, [bytes.fromhex("0a03fffefd")])
        assert error is not None
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "not a valid message" in (error.details() or "")
    warnings = [r for r in caplog.records if r.getMessage() == "undecodable request body"]
    assert len(warnings) == 1, "one line per caller per interval, not one per call"
    assert no_tracebacks(caplog) == []


async def test_long_names_get_invalid_argument_with_bounded_details(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    long_name = "m" * 10_240
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await services.gateway.Predict(
            gateway_pb2.PredictRequest(model=long_name, row=ROW), timeout=10
        )
    error = raised.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert len(error.details() or "") < 2000
    assert "(10,240 characters)" in (error.details() or "")
    status = rpc_status.from_call(error)  # type: ignore[arg-type]  # an aio error is a Call
    assert status is not None and status.details, "the BadRequest detail still names the field"
    version = await services.stack.register_linear(1)
    await set_policy(
        services.gateway, events_pb2.RoutingPolicy(model="churn", stable_version=version)
    )
    row = common_pb2.Row()
    row.CopyFrom(ROW)
    row.features["f" * 10_240].number = 1.0
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await services.gateway.Predict(
            gateway_pb2.PredictRequest(model="churn", row=row), timeout=10
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert len(raised.value.details() or "") < 2000
    assert no_tracebacks(caplog) == []


async def test_a_policy_naming_a_missing_version_is_refused_and_the_old_one_serves(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    version = await services.stack.register_linear(1)
    policy = await set_policy(
        services.gateway, events_pb2.RoutingPolicy(model="churn", stable_version=version)
    )
    for stable, code in (
        ("999", grpc.StatusCode.FAILED_PRECONDITION),
        ("01", grpc.StatusCode.INVALID_ARGUMENT),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await set_policy(
                services.gateway,
                events_pb2.RoutingPolicy(model="churn", stable_version=stable),
                expected=policy.revision,
            )
        assert raised.value.code() == code
        assert "policy.stable_version" in (raised.value.details() or "")
    shadow = events_pb2.RoutingPolicy(model="churn", stable_version=version)
    shadow.shadow.versions.append("999")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await set_policy(services.gateway, shadow, expected=policy.revision)
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "policy.shadow.versions[0]" in (raised.value.details() or "")
    current = await services.gateway.GetRoutingPolicy(
        gateway_pb2.GetRoutingPolicyRequest(model="churn"), timeout=5
    )
    assert current.revision == policy.revision
    assert (await predict(services.gateway)).version == version
    assert no_tracebacks(caplog) == []


async def test_a_policy_on_the_topic_naming_a_missing_version_leaves_the_old_one_in_force(
    services: Services,
) -> None:
    version = await services.stack.register_linear(1)
    policy = await set_policy(
        services.gateway, events_pb2.RoutingPolicy(model="churn", stable_version=version)
    )
    skipped_metric = "driftloop_gateway_policies_skipped_total"
    skipped_before = REGISTRY.get_sample_value(skipped_metric, {"model": "churn"}) or 0.0
    typo = events_pb2.RoutingPolicy(
        model="churn", stable_version="999", revision=policy.revision + 1
    )
    assert services.stack.kafka.bootstrap_servers is not None
    producer = EventProducer(services.stack.kafka, services.stack.kafka.bootstrap_servers)
    await producer.start()
    try:
        await producer.publish(TopicNames(services.stack.kafka.topic_prefix).routing, "churn", typo)
    finally:
        await producer.stop()

    async def skipped() -> bool:
        value = REGISTRY.get_sample_value(skipped_metric, {"model": "churn"})
        return (value or 0.0) > skipped_before

    await until(skipped)
    current = await services.gateway.GetRoutingPolicy(
        gateway_pb2.GetRoutingPolicyRequest(model="churn"), timeout=5
    )
    assert current.stable_version == version
    assert (await predict(services.gateway)).version == version


async def test_a_version_with_a_leading_zero_is_refused_everywhere(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await services.stack.register_linear(1)
    inference = inference_pb2_grpc.InferenceServiceStub(
        services.channels[services.ports["driftloop.v1.InferenceService"]]
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await inference.Predict(
            inference_pb2.InferenceRequest(
                model=common_pb2.ModelRef(model="churn", version="01"), row=ROW
            ),
            timeout=10,
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "model.version" in (raised.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await services.stack.registry.GetModelVersion(
            registry_pb2.GetModelVersionRequest(
                model=common_pb2.ModelRef(model="churn", version="01")
            ),
            timeout=10,
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await services.stack.registry.SetAlias(
            registry_pb2.SetAliasRequest(model="churn", alias="champion", version="01"),
            timeout=10,
            metadata=ADMIN,
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # An unknown version is NOT_FOUND, and a caller's mistake is not logged as an error.
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await inference.Predict(
            inference_pb2.InferenceRequest(
                model=common_pb2.ModelRef(model="churn", version="77"), row=ROW
            ),
            timeout=10,
        )
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert no_tracebacks(caplog) == []


def blocking_stream_call(
    channel: grpc.Channel,
    method: MethodDescriptor,
    messages: list[bytes],
    metadata: tuple[tuple[str, str], ...],
) -> grpc.RpcError | None:
    """Call a client-streaming `method` with raw bodies through the blocking API.

    grpc.aio's client reports INTERNAL "Internal error from Core" instead of the server's
    status when the server ends the call before the client has half-closed and a write then
    fails (grpc/grpc#36066): a bad first body makes our servers do exactly that. The blocking
    client reports the status the server sent, which is what this test judges."""
    path = f"/{method.containing_service.full_name}/{method.name}"
    try:
        if method.server_streaming:
            both: Any = channel.stream_stream(path)
            for _ in both(iter(messages), timeout=10, metadata=metadata):
                pass
        else:
            upload: Any = channel.stream_unary(path)
            upload(iter(messages), timeout=10, metadata=metadata)
    except grpc.RpcError as error:
        return error
    return None


def fuzz_property(
    method: MethodDescriptor,
    channel: grpc.aio.Channel,
    blocking: grpc.Channel,
    metadata: tuple[tuple[str, str], ...],
    loop: asyncio.AbstractEventLoop,
    seen: set[str],
) -> Callable[[], None]:
    """A hypothesis property over `method`'s bodies, run in a worker thread: each example
    is called on the test's event loop, where the servers run (client-streaming methods
    through the blocking client, see blocking_stream_call)."""

    @settings(
        max_examples=EXAMPLES_PER_METHOD,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(body=bodies(method.input_type))
    def property(body: bytes) -> None:
        error: Any
        if method.client_streaming:
            error = blocking_stream_call(blocking, method, [body, body], metadata)
        else:
            call = raw_call(channel, method, [body, body], metadata)
            error = asyncio.run_coroutine_threadsafe(call, loop).result(60)
        code = error.code() if error is not None else grpc.StatusCode.OK
        seen.add(code.name)
        details = (error.details() or "") if error is not None else ""
        assert code not in NEVER_FOR_A_CALLER, f"{method.full_name} answered {code.name}: {details}"
        assert len(details) <= 2100

    return property


SERVICES: list[ServiceDescriptor] = [
    registry_pb2.DESCRIPTOR.services_by_name["ModelRegistry"],
    inference_pb2.DESCRIPTOR.services_by_name["InferenceService"],
    gateway_pb2.DESCRIPTOR.services_by_name["Gateway"],
    oip_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"],
    drift_pb2.DESCRIPTOR.services_by_name["DriftService"],
]


# Other threads (the servers, aiokafka) use `random` while hypothesis draws: not its business.
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")
async def test_every_rpc_answers_random_input_with_a_precise_status(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    version = await services.stack.register_linear(1)
    await set_policy(
        services.gateway, events_pb2.RoutingPolicy(model="churn", stable_version=version)
    )
    loop = asyncio.get_running_loop()
    seen: dict[str, set[str]] = {}
    for service in SERVICES:
        port = services.ports[service.full_name]
        channel = services.channels[port]
        for method in service.methods:
            admin = method.GetOptions().Extensions[_options.admin]
            name = f"{service.name}.{method.name}"
            with grpc.insecure_channel(f"127.0.0.1:{port}") as blocking:
                property = fuzz_property(
                    method,
                    channel,
                    blocking,
                    ADMIN if admin else (),
                    loop,
                    seen.setdefault(name, set()),
                )
                await asyncio.to_thread(property)
            if admin:  # and without the token, the same bodies are refused before anything
                error = await raw_call(channel, method, [b"", b""])
                assert error is not None and error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert all(codes for codes in seen.values())
    # Every server still serves, and a plain prediction still works.
    for port, channel in services.channels.items():
        stub: Any = health_pb2_grpc.HealthStub(channel)  # the stubs type the sync client only
        health = await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING, port
    assert (await predict(services.gateway)).version == version
    assert no_tracebacks(caplog) == []
