"""The server kit against real gRPC calls on 127.0.0.1."""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from driftloop.kit.grpc_client import admin_metadata, open_channel
from driftloop.kit.grpc_server import GrpcServer
from driftloop.kit.settings import GrpcServerSettings
from driftloop.v1 import common_pb2, registry_pb2, registry_pb2_grpc
from tests.integration.registry_stub import build_server

TOKEN = "test-admin-token"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
async def server() -> AsyncIterator[GrpcServer]:
    server = build_server(
        GrpcServerSettings(metrics_port=0, admin_token=SecretStr(TOKEN), grace_period_s=1)
    )
    await server.start()
    yield server
    await server.stop(0)


@pytest.fixture
async def registry(server: GrpcServer) -> AsyncIterator[registry_pb2_grpc.ModelRegistryStub]:
    async with open_channel(f"127.0.0.1:{server.port}") as channel:
        yield registry_pb2_grpc.ModelRegistryStub(channel)


def get(model: str, version: str = "1") -> registry_pb2.GetModelVersionRequest:
    return registry_pb2.GetModelVersionRequest(
        model=common_pb2.ModelRef(model=model, version=version)
    )


async def test_health_is_serving_only_once_ready(server: GrpcServer) -> None:
    async with open_channel(f"127.0.0.1:{server.port}") as channel:
        # The health and reflection stubs of typeshed describe sync channels only.
        health: Any = health_pb2_grpc.HealthStub(channel)
        for service in ("", "driftloop.v1.ModelRegistry"):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
        await server.set_ready()
        for service in ("", "driftloop.v1.ModelRegistry"):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_a_plain_call_succeeds(registry: registry_pb2_grpc.ModelRegistryStub) -> None:
    reply = await registry.GetModelVersion(get("churn", "3"), timeout=5)
    assert (reply.model, reply.version) == ("churn", "3")


async def test_domain_errors_reach_the_client_as_their_status(
    registry: registry_pb2_grpc.ModelRegistryStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await registry.GetModelVersion(get("missing"), timeout=5)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert missing.value.details() == "model 'missing' is not registered"

    call = registry.GetModelVersion(get("bad name"), timeout=5)
    with pytest.raises(grpc.aio.AioRpcError) as invalid:
        await call
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert invalid.value.details() == "model.model: must not contain spaces"
    status = await rpc_status.aio.from_call(call)
    assert status is not None
    violation = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(violation)
    assert violation.field_violations[0].field == "model.model"


async def test_servicer_aborts_keep_their_status(
    registry: registry_pb2_grpc.ModelRegistryStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as aborted:
        await registry.GetModelVersion(get("self-abort"), timeout=5)
    assert aborted.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert aborted.value.details() == "aborted by the servicer"


async def test_an_unexpected_exception_is_internal_without_its_text(
    registry: registry_pb2_grpc.ModelRegistryStub, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await registry.ListModelVersions(registry_pb2.ListModelVersionsRequest(), timeout=5)
    assert error.value.code() == grpc.StatusCode.INTERNAL
    assert "a bug" not in (error.value.details() or "")
    assert any("unexpected error" in record.message for record in caplog.records)


async def test_admin_methods_need_the_token(
    registry: registry_pb2_grpc.ModelRegistryStub,
) -> None:
    request = registry_pb2.RegisterModelVersionRequest(
        version=registry_pb2.ModelVersion(model="churn")
    )
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await registry.RegisterModelVersion(request, timeout=5)
    assert missing.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "without a token" in (missing.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as wrong:
        await registry.RegisterModelVersion(request, timeout=5, metadata=admin_metadata("nope"))
    assert wrong.value.code() == grpc.StatusCode.UNAUTHENTICATED
    reply = await registry.RegisterModelVersion(request, timeout=5, metadata=admin_metadata(TOKEN))
    assert reply.version == "1"
    # A read method needs no token.
    assert (await registry.GetModelVersion(get("churn"), timeout=5)).model == "churn"


async def test_admin_methods_are_refused_when_no_token_is_configured() -> None:
    server = build_server(GrpcServerSettings())
    await server.start()
    try:
        async with open_channel(f"127.0.0.1:{server.port}") as channel:
            stub = registry_pb2_grpc.ModelRegistryStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await stub.RegisterModelVersion(
                    registry_pb2.RegisterModelVersionRequest(),
                    timeout=5,
                    metadata=admin_metadata("anything"),
                )
        assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "DRIFTLOOP_ADMIN_TOKEN" in (error.value.details() or "")
    finally:
        await server.stop(0)


async def test_reflection_lists_the_services(server: GrpcServer) -> None:
    async with open_channel(f"127.0.0.1:{server.port}") as channel:
        stub: Any = reflection_pb2_grpc.ServerReflectionStub(channel)  # type: ignore[arg-type]
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        async for reply in stub.ServerReflectionInfo(iter([request]), timeout=5):
            names = {service.name for service in reply.list_services_response.service}
            break
    assert {"driftloop.v1.ModelRegistry", "grpc.health.v1.Health"} <= names


async def test_metrics_count_calls_by_code(
    server: GrpcServer, registry: registry_pb2_grpc.ModelRegistryStub
) -> None:
    url = f"http://127.0.0.1:{server.metrics_port}/metrics"

    async def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = await asyncio.to_thread(
            lambda: urllib.request.urlopen(url, timeout=5).read().decode()
        )
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    before = await scrape()
    await registry.GetModelVersion(get("churn"), timeout=5)
    with pytest.raises(grpc.aio.AioRpcError):
        await registry.GetModelVersion(get("missing"), timeout=5)
    after = await scrape()
    # go-grpc-prometheus's names, labels and label values, as gRPC dashboards expect them
    call = {
        "grpc_type": "unary",
        "grpc_service": "driftloop.v1.ModelRegistry",
        "grpc_method": "GetModelVersion",
    }

    def added(name: str, **labels: str) -> float:
        key = (name, tuple(sorted({**call, **labels}.items())))
        return after[key] - before.get(key, 0.0)

    assert added("grpc_server_started_total") == 2
    assert added("grpc_server_handled_total", grpc_code="OK") == 1
    assert added("grpc_server_handled_total", grpc_code="NotFound") == 1
    assert added("grpc_server_handling_seconds_count") == 2


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "server.pem", directory / "server.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


async def test_tls_serves_trusted_clients_only(tmp_path: Path) -> None:
    cert_file, key_file = _self_signed(tmp_path)
    server = build_server(
        GrpcServerSettings(tls_cert_file=cert_file, tls_key_file=key_file, host="localhost")
    )
    await server.start()
    try:
        async with open_channel(f"localhost:{server.port}", tls_ca_file=cert_file) as channel:
            reply = await registry_pb2_grpc.ModelRegistryStub(channel).GetModelVersion(
                get("churn"), timeout=5
            )
            assert reply.model == "churn"
        async with open_channel(f"localhost:{server.port}") as plaintext:
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await registry_pb2_grpc.ModelRegistryStub(plaintext).GetModelVersion(
                    get("churn"), timeout=2
                )
            assert error.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await server.stop(0)


async def test_sigterm_drains_in_flight_calls(tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.integration.registry_stub", str(port_file), cwd=REPO
    )
    try:
        deadline = time.monotonic() + 30
        while not (port := await asyncio.to_thread(_read, port_file)):
            assert process.returncode is None, "the server process died during start-up"
            assert time.monotonic() < deadline, "the server process did not start"
            await asyncio.sleep(0.05)
        async with open_channel(f"127.0.0.1:{port}") as channel:
            stub = registry_pb2_grpc.ModelRegistryStub(channel)
            slow = asyncio.ensure_future(stub.GetLineage(get("churn", "1.5"), timeout=10))
            started = Path(f"{port_file}.call")
            while not await asyncio.to_thread(started.exists):
                assert not slow.done(), "the slow call ended before it was seen to start"
                assert time.monotonic() < deadline + 10, "the slow call never reached the server"
                await asyncio.sleep(0.01)
            process.terminate()  # the call is in flight on the server
            reply = await slow
            assert reply.versions[0].model == "churn"
            # New calls are refused once shutdown began.
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.GetModelVersion(get("churn"), timeout=2)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert await asyncio.wait_for(process.wait(), 15) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


async def test_methods_a_servicer_lacks_answer_unimplemented() -> None:
    from driftloop.v1 import inference_pb2, inference_pb2_grpc

    class Nothing(inference_pb2_grpc.InferenceServiceServicer):
        pass

    server = GrpcServer("empty", GrpcServerSettings())
    empty = Nothing()  # type: ignore[abstract]  # on purpose: it implements nothing
    server.add_service(inference_pb2.DESCRIPTOR.services_by_name["InferenceService"], empty)
    await server.start()
    try:
        async with open_channel(f"127.0.0.1:{server.port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await inference_pb2_grpc.InferenceServiceStub(channel).Predict(
                    inference_pb2.InferenceRequest(), timeout=5
                )
        assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert "Predict is not implemented" in (error.value.details() or "")
    finally:
        await server.stop(0)
