"""The server kit serves the four kinds of RPC (unary, client, server and bidirectional
streaming) alike: answers, domain errors as their status, undecodable bodies, missing
methods, and the metrics' grpc_type label. driftloop's protos use three of the kinds; a
service made here from a descriptor has all four."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, wrappers_pb2
from google.protobuf.descriptor import ServiceDescriptor
from prometheus_client import REGISTRY

from driftloop.kit.errors import InvalidArgument
from driftloop.kit.grpc_client import open_channel
from driftloop.kit.grpc_server import GrpcServer
from driftloop.kit.settings import GrpcServerSettings

SERVICE = "driftloop.test.Kinds"
# method name -> (client streaming, server streaming, go-grpc-prometheus grpc_type)
KINDS = {
    "Unary": (False, False, "unary"),
    "Upload": (True, False, "client_stream"),
    "Download": (False, True, "server_stream"),
    "Chat": (True, True, "bidi_stream"),
}
Text = wrappers_pb2.StringValue


def kinds_service() -> ServiceDescriptor:
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    file = descriptor_pb2.FileDescriptorProto(
        name="driftloop/test/kinds.proto",
        package="driftloop.test",
        dependency=["google/protobuf/wrappers.proto"],
        syntax="proto3",
    )
    service = file.service.add(name="Kinds")
    for name, (client_streaming, server_streaming, _) in KINDS.items():
        service.method.add(
            name=name,
            input_type=".google.protobuf.StringValue",
            output_type=".google.protobuf.StringValue",
            client_streaming=client_streaming,
            server_streaming=server_streaming,
        )
    pool.Add(file)
    return pool.FindServiceByName(SERVICE)


def checked(request: Text) -> str:
    if request.value == "bad":
        raise InvalidArgument("value", "bad is refused")
    return request.value.upper()


class Echo:
    """Upper-cases what it is sent; "bad" is a domain error in every kind."""

    async def Unary(self, request: Text, context: Any) -> Text:
        return Text(value=checked(request))

    async def Upload(self, requests: AsyncIterator[Text], context: Any) -> Text:
        return Text(value="".join([checked(request) async for request in requests]))

    async def Download(self, request: Text, context: Any) -> AsyncIterator[Text]:
        for letter in checked(request):
            yield Text(value=letter)

    async def Chat(self, requests: AsyncIterator[Text], context: Any) -> AsyncIterator[Text]:
        async for request in requests:
            yield Text(value=checked(request))


async def start(servicer: object) -> GrpcServer:
    server = GrpcServer("kinds", GrpcServerSettings(grace_period_s=1))
    server.add_service(kinds_service(), servicer)
    await server.start()
    return server


def caller(channel: grpc.aio.Channel, method: str) -> Callable[[list[bytes]], Any]:
    """Call `method` with raw request bodies; return the response bodies as a list."""
    path = f"/{SERVICE}/{method}"
    client_streaming, server_streaming, _ = KINDS[method]

    async def call(bodies: list[bytes]) -> list[bytes]:
        async def stream() -> AsyncIterator[bytes]:
            for body in bodies:
                yield body

        # Raw bytes both ways: no (de)serialisers, so the stubs type no such call.
        if client_streaming and server_streaming:
            both: Any = channel.stream_stream(path)
            return [response async for response in both(stream(), timeout=10)]
        if client_streaming:
            upload: Any = channel.stream_unary(path)
            return [await upload(stream(), timeout=10)]
        if server_streaming:
            download: Any = channel.unary_stream(path)
            return [response async for response in download(bodies[0], timeout=10)]
        unary: Any = channel.unary_unary(path)
        return [await unary(bodies[0], timeout=10)]

    return call


def values(bodies: list[bytes]) -> list[str]:
    return [Text.FromString(body).value for body in bodies]


def counted(name: str, method: str, **labels: str) -> float:
    grpc_type = KINDS[method][2]
    value = REGISTRY.get_sample_value(
        name, {"grpc_type": grpc_type, "grpc_service": SERVICE, "grpc_method": method, **labels}
    )
    return value or 0.0


EXPECTED = {
    "Unary": (["ab"], ["AB"]),
    "Upload": (["ab", "cd"], ["ABCD"]),
    "Download": (["ab"], ["A", "B"]),
    "Chat": (["ab", "cd"], ["AB", "CD"]),
}


@pytest.mark.parametrize("method", list(KINDS))
async def test_every_kind_answers_and_is_counted_under_its_type(method: str) -> None:
    server = await start(Echo())
    sent, expected = EXPECTED[method]
    started = counted("grpc_server_started_total", method)
    ok = counted("grpc_server_handled_total", method, grpc_code="OK")
    try:
        async with open_channel(f"127.0.0.1:{server.port}") as channel:
            answers = await caller(channel, method)(
                [Text(value=v).SerializeToString() for v in sent]
            )
    finally:
        await server.stop(0)
    assert values(answers) == expected
    assert counted("grpc_server_started_total", method) == started + 1
    assert counted("grpc_server_handled_total", method, grpc_code="OK") == ok + 1


@pytest.mark.parametrize("method", list(KINDS))
async def test_every_kind_turns_a_domain_error_into_its_status(method: str) -> None:
    server = await start(Echo())
    refused = counted("grpc_server_handled_total", method, grpc_code="InvalidArgument")
    try:
        async with open_channel(f"127.0.0.1:{server.port}") as channel:
            call = caller(channel, method)
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await call([Text(value="bad").SerializeToString()])
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "bad is refused" in (error.value.details() or "")
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await call([bytes.fromhex("0a03fffefd")])  # not a StringValue: bad UTF-8
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "not a valid message" in (error.value.details() or "")
    finally:
        await server.stop(0)
    assert counted("grpc_server_handled_total", method, grpc_code="InvalidArgument") == refused + 2


@pytest.mark.parametrize("method", list(KINDS))
async def test_every_kind_a_servicer_lacks_is_unimplemented(method: str) -> None:
    server = await start(object())
    try:
        async with open_channel(f"127.0.0.1:{server.port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await caller(channel, method)([Text(value="ab").SerializeToString()])
    finally:
        await server.stop(0)
    assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert f"{method} is not implemented" in (error.value.details() or "")
