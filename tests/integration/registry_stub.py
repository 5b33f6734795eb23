"""A test-only ModelRegistry servicer that exercises each path of the server kit."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc

from driftloop.kit.errors import InvalidArgument, NotFound
from driftloop.kit.grpc_server import GrpcServer
from driftloop.kit.settings import GrpcServerSettings
from driftloop.v1 import registry_pb2, registry_pb2_grpc


class KitTestRegistry(registry_pb2_grpc.ModelRegistryServicer):
    """GetModelVersion: echo, NotFound for model 'missing', InvalidArgument for a bad name.
    ListModelVersions: an unexpected bug. GetLineage: slow (for the drain test), and it
    writes `started_file` first, when given, so a test knows the call is in flight.
    RegisterModelVersion: admin."""

    def __init__(self, started_file: Path | None = None) -> None:
        self._started_file = started_file

    async def GetModelVersion(
        self, request: registry_pb2.GetModelVersionRequest, context: Any
    ) -> registry_pb2.ModelVersion:
        if request.model.model == "missing":
            raise NotFound("model 'missing' is not registered")
        if " " in request.model.model:
            raise InvalidArgument("model.model", "must not contain spaces")
        if request.model.model == "self-abort":
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "aborted by the servicer")
        return registry_pb2.ModelVersion(model=request.model.model, version=request.model.version)

    async def ListModelVersions(
        self, request: registry_pb2.ListModelVersionsRequest, context: Any
    ) -> registry_pb2.ListModelVersionsResponse:
        raise ZeroDivisionError("a bug")

    async def GetLineage(
        self, request: registry_pb2.GetModelVersionRequest, context: Any
    ) -> registry_pb2.ListModelVersionsResponse:
        if self._started_file is not None:
            await asyncio.to_thread(self._started_file.write_text, "started")
        await asyncio.sleep(float(request.model.version or "1"))  # the slow call itself
        return registry_pb2.ListModelVersionsResponse(
            versions=[registry_pb2.ModelVersion(model=request.model.model)]
        )

    async def RegisterModelVersion(
        self, request: registry_pb2.RegisterModelVersionRequest, context: Any
    ) -> registry_pb2.ModelVersion:
        return registry_pb2.ModelVersion(model=request.version.model, version="1")

    async def UploadArtifact(self, request: Any, context: Any) -> registry_pb2.ArtifactRef:
        raise NotFound("no artifacts here")

    async def SetAlias(
        self, request: registry_pb2.SetAliasRequest, context: Any
    ) -> registry_pb2.AliasMove:
        raise NotFound("no aliases here")

    async def ResolveAlias(
        self, request: registry_pb2.ResolveAliasRequest, context: Any
    ) -> registry_pb2.ModelVersion:
        raise NotFound("no aliases here")

    async def GetAliasHistory(
        self, request: registry_pb2.GetAliasHistoryRequest, context: Any
    ) -> registry_pb2.GetAliasHistoryResponse:
        raise NotFound("no aliases here")


def build_server(settings: GrpcServerSettings, started_file: Path | None = None) -> GrpcServer:
    server = GrpcServer("kit-test", settings)
    servicer = KitTestRegistry(started_file)
    server.add_service(registry_pb2.DESCRIPTOR.services_by_name["ModelRegistry"], servicer)
    return server


async def main(port_file: str) -> None:
    """Serve until SIGTERM (used by the graceful-shutdown test in a child process); a
    GetLineage call writes `<port_file>.call` when it starts."""
    from driftloop.kit.grpc_server import wait_for_signal

    server = build_server(GrpcServerSettings(grace_period_s=10), Path(f"{port_file}.call"))
    port = await server.start()
    await server.set_ready()
    await asyncio.to_thread(Path(port_file).write_text, str(port))
    await wait_for_signal()
    await server.stop()


if __name__ == "__main__":
    import sys

    asyncio.run(main(sys.argv[1]))
