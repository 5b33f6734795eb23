"""The inference service's view of the registry: version records as the host's specs."""

from __future__ import annotations

from driftloop.client.registry import RegistryClient
from driftloop.kit.errors import (
    DriftloopError,
    ErrorCode,
    FailedPrecondition,
    NotFound,
    Unavailable,
    Upstream,
)
from driftloop.models.convert import output_kind_from_proto, schema_from_proto
from driftloop.models.loading import VersionSpec


def _translate(error: Upstream) -> DriftloopError:
    """NotFound passes through; a refused name is the caller's precondition; any other
    failure of the registry leaves this service unable to answer (UNAVAILABLE)."""
    if error.code == ErrorCode.NOT_FOUND:
        return NotFound(error.message)
    if error.code == ErrorCode.INVALID_ARGUMENT:
        return FailedPrecondition(error.message)
    return Unavailable(f"{error.message} ({error.code.value})")


class RegistryVersions:
    """The host's VersionSource: registry records as VersionSpec."""

    def __init__(self, registry: RegistryClient) -> None:
        self._registry = registry

    async def describe(self, model: str, version_or_alias: str) -> VersionSpec:
        try:
            record = await self._registry.get(model, version_or_alias)
        except Upstream as error:
            raise _translate(error) from None
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
