"""The inference service's view of the registry: version records over gRPC."""

from __future__ import annotations

import grpc

from driftloop.kit.errors import DriftloopError, FailedPrecondition, NotFound, Unavailable
from driftloop.models.convert import output_kind_from_proto, schema_from_proto
from driftloop.models.loading import VersionSpec
from driftloop.v1 import common_pb2, registry_pb2, registry_pb2_grpc


class RegistryClient:
    def __init__(self, channel: grpc.aio.Channel, timeout_s: float) -> None:
        self._stub = registry_pb2_grpc.ModelRegistryStub(channel)
        self._timeout = timeout_s

    async def get(self, model: str, version_or_alias: str) -> registry_pb2.ModelVersion:
        """The version record; NotFound passes through, other failures are UNAVAILABLE."""
        try:
            record: registry_pb2.ModelVersion = await self._stub.GetModelVersion(
                registry_pb2.GetModelVersionRequest(
                    model=common_pb2.ModelRef(model=model, version=version_or_alias)
                ),
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as error:
            raise _translate(error, f"{model}:{version_or_alias}") from None
        return record


def _translate(error: grpc.aio.AioRpcError, what: str) -> DriftloopError:
    if error.code() == grpc.StatusCode.NOT_FOUND:
        return NotFound(error.details() or f"{what} is not in the registry")
    if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
        return FailedPrecondition(f"the registry refused {what}: {error.details()}")
    return Unavailable(
        f"the registry could not be asked about {what}: {error.code().name} {error.details()}"
    )


class RegistryVersions:
    """The host's VersionSource: registry records as VersionSpec."""

    def __init__(self, client: RegistryClient) -> None:
        self._client = client

    async def describe(self, model: str, version_or_alias: str) -> VersionSpec:
        record = await self._client.get(model, version_or_alias)
        return VersionSpec(
            model=record.model,
            version=record.version,
            flavor=record.flavor,
            artifact_sha256=record.artifact_sha256,
            schema=schema_from_proto(record.schema),
            output_kind=output_kind_from_proto(record.output_kind),
            entry_point=record.entry_point,
            pickle_trusted=record.pickle_trusted,
        )
