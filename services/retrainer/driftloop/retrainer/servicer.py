"""The ModelRegistry gRPC adapter: protobuf in, registry core, protobuf out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from driftloop.kit.errors import ResourceExhausted
from driftloop.kit.handlers import actor_of
from driftloop.kit.times import stamp, to_datetime
from driftloop.retrainer.registry import AliasMove, Registry
from driftloop.v1 import registry_pb2, registry_pb2_grpc


async def _limited(
    chunks: AsyncIterator[registry_pb2.ArtifactChunk], limit: int
) -> AsyncIterator[tuple[bytes, str]]:
    size = 0
    async for chunk in chunks:
        size += len(chunk.data)
        if size > limit:
            raise ResourceExhausted(f"the artifact is larger than the limit of {limit} bytes")
        yield chunk.data, chunk.expected_sha256


def move_to_proto(move: AliasMove) -> registry_pb2.AliasMove:
    return registry_pb2.AliasMove(
        model=move.model,
        alias=move.alias,
        version=move.version,
        previous_version=move.previous_version,
        actor=move.actor,
        reason=move.reason,
        time=stamp(move.time),
    )


class RegistryServicer(registry_pb2_grpc.ModelRegistryServicer):
    def __init__(self, registry: Registry, max_artifact_bytes: int) -> None:
        self._registry = registry
        self._max_artifact_bytes = max_artifact_bytes

    async def UploadArtifact(
        self, requests: AsyncIterator[registry_pb2.ArtifactChunk], context: Any
    ) -> registry_pb2.ArtifactRef:
        digest, size = await self._registry.upload(
            [chunk async for chunk in _limited(requests, self._max_artifact_bytes)]
        )
        return registry_pb2.ArtifactRef(sha256=digest, size=size)

    async def RegisterModelVersion(
        self, request: registry_pb2.RegisterModelVersionRequest, context: Any
    ) -> registry_pb2.ModelVersion:
        return await self._registry.register(request.version, actor_of(context))

    async def GetModelVersion(
        self, request: registry_pb2.GetModelVersionRequest, context: Any
    ) -> registry_pb2.ModelVersion:
        return await self._registry.get(request.model.model, request.model.version)

    async def ListModelVersions(
        self, request: registry_pb2.ListModelVersionsRequest, context: Any
    ) -> registry_pb2.ListModelVersionsResponse:
        return registry_pb2.ListModelVersionsResponse(
            versions=await self._registry.versions(request.model)
        )

    async def GetLineage(
        self, request: registry_pb2.GetModelVersionRequest, context: Any
    ) -> registry_pb2.ListModelVersionsResponse:
        chain = await self._registry.lineage(request.model.model, request.model.version)
        return registry_pb2.ListModelVersionsResponse(versions=chain)

    async def SetAlias(
        self, request: registry_pb2.SetAliasRequest, context: Any
    ) -> registry_pb2.AliasMove:
        move = await self._registry.set_alias(
            request.model,
            request.alias,
            request.version,
            request.expected_version,
            request.reason,
            actor_of(context),
        )
        return move_to_proto(move)

    async def ResolveAlias(
        self, request: registry_pb2.ResolveAliasRequest, context: Any
    ) -> registry_pb2.ModelVersion:
        at = to_datetime("at", request.at) if request.HasField("at") else None
        version = await self._registry.resolve(request.model, request.alias, at)
        return await self._registry.get(request.model, version)

    async def GetAliasHistory(
        self, request: registry_pb2.GetAliasHistoryRequest, context: Any
    ) -> registry_pb2.GetAliasHistoryResponse:
        moves = await self._registry.history(request.model, request.alias or None)
        return registry_pb2.GetAliasHistoryResponse(moves=[move_to_proto(m) for m in moves])
