"""The gRPC adapters of the retrainer service: the ModelRegistry and the Retrainer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from driftloop.kit.errors import InvalidArgument, NotFound, ResourceExhausted, shown
from driftloop.kit.handlers import actor_of
from driftloop.kit.names import check_name
from driftloop.kit.times import stamp, to_datetime
from driftloop.models.artifacts import SHA256
from driftloop.retrainer.controller import Controller, parse_window
from driftloop.retrainer.registry import AliasMove, Registry
from driftloop.retrainer.runs_store import RunStore
from driftloop.retrainer.version_proto import new_version_from_proto, version_to_proto
from driftloop.v1 import registry_pb2, registry_pb2_grpc, retrainer_pb2, retrainer_pb2_grpc


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
        new = new_version_from_proto(request.version)
        return version_to_proto(await self._registry.register(new, actor_of(context)))

    async def GetModelVersion(
        self, request: registry_pb2.GetModelVersionRequest, context: Any
    ) -> registry_pb2.ModelVersion:
        return version_to_proto(
            await self._registry.get(request.model.model, request.model.version)
        )

    async def ListModelVersions(
        self, request: registry_pb2.ListModelVersionsRequest, context: Any
    ) -> registry_pb2.ListModelVersionsResponse:
        versions = await self._registry.versions(request.model)
        return registry_pb2.ListModelVersionsResponse(versions=map(version_to_proto, versions))

    async def GetLineage(
        self, request: registry_pb2.GetModelVersionRequest, context: Any
    ) -> registry_pb2.ListModelVersionsResponse:
        chain = await self._registry.lineage(request.model.model, request.model.version)
        return registry_pb2.ListModelVersionsResponse(versions=map(version_to_proto, chain))

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
        return version_to_proto(await self._registry.get(request.model, version))

    async def GetAliasHistory(
        self, request: registry_pb2.GetAliasHistoryRequest, context: Any
    ) -> registry_pb2.GetAliasHistoryResponse:
        moves = await self._registry.history(request.model, request.alias or None)
        return registry_pb2.GetAliasHistoryResponse(moves=[move_to_proto(m) for m in moves])


MAX_LIST = 1000


def _limit(requested: int, default: int = 20) -> int:
    if requested > MAX_LIST:
        raise InvalidArgument("limit", f"at most {MAX_LIST}")
    return requested or default


class RetrainerServicer(retrainer_pb2_grpc.RetrainerServicer):
    """The Retrainer gRPC adapter: protobuf in, the controller and run store, protobuf out."""

    def __init__(self, controller: Controller, runs: RunStore) -> None:
        self._controller = controller
        self._runs = runs

    async def TriggerRetrain(
        self, request: retrainer_pb2.TriggerRetrainRequest, context: Any
    ) -> retrainer_pb2.RetrainRun:
        window = request.data_window
        start = to_datetime("data_window.start", window.start) if window.HasField("start") else None
        end = to_datetime("data_window.end", window.end) if window.HasField("end") else None
        if request.snapshot_id and not SHA256.fullmatch(request.snapshot_id):
            raise InvalidArgument("snapshot_id", "a SHA-256 hex digest (64 characters)")
        return await self._controller.trigger_manual(
            request.model,
            request.reason[:500],
            actor_of(context),
            parse_window(start, end),
            request.snapshot_id,
            request.seed if request.snapshot_id and request.seed else None,
        )

    async def GetRetrainRun(
        self, request: retrainer_pb2.GetRetrainRunRequest, context: Any
    ) -> retrainer_pb2.RetrainRun:
        if not request.run_id or len(request.run_id) > 200:
            raise InvalidArgument("run_id", "a run id, as TriggerRetrain or ListRetrainRuns gave")
        run = await self._runs.run(request.run_id)
        if run is None:
            raise NotFound(f"no retraining run {shown(request.run_id)}")
        return run

    async def ListRetrainRuns(
        self, request: retrainer_pb2.ListRetrainRunsRequest, context: Any
    ) -> retrainer_pb2.ListRetrainRunsResponse:
        check_name("model", request.model, "model name")
        runs = await self._runs.runs(request.model, _limit(request.limit))
        return retrainer_pb2.ListRetrainRunsResponse(runs=runs)

    async def ListRetrainDecisions(
        self, request: retrainer_pb2.ListRetrainDecisionsRequest, context: Any
    ) -> retrainer_pb2.ListRetrainDecisionsResponse:
        check_name("model", request.model, "model name")
        decisions = await self._runs.decisions(request.model, _limit(request.limit, 50))
        return retrainer_pb2.ListRetrainDecisionsResponse(decisions=decisions)

    async def GetTrainingPolicy(
        self, request: retrainer_pb2.GetTrainingPolicyRequest, context: Any
    ) -> retrainer_pb2.TrainingPolicy:
        return await self._controller.policy(request.model)

    async def SetTrainingPolicy(
        self, request: retrainer_pb2.SetTrainingPolicyRequest, context: Any
    ) -> retrainer_pb2.TrainingPolicy:
        return await self._controller.set_policy(
            request.policy, request.expected_revision, actor_of(context)
        )
