"""The model registry's client: every caller of the registry goes through it (the inference
service for version records, the drift service for baselines, the gateway for the champion
alias and version records, and DriftloopClient for everything).

`RegistryClient` builds each request and returns the records; how a call is made is its
`RegistryCall`: a service makes one attempt with its deadline and passes a refusal on as
the domain error of the registry's status, naming what was asked (`ServiceCall`);
DriftloopClient retries what is safe to repeat and raises its typed errors.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any, Protocol

import grpc

from driftloop.kit.grpc_client import admin_metadata, upstream_error
from driftloop.v1 import common_pb2, registry_pb2, registry_pb2_grpc

CHUNK = 1024 * 1024  # artifact upload chunk, bytes


class RegistryCall(Protocol):
    """Make one registry call: `method` (a stub's method) with `request`. `retry`: safe to
    repeat; `admin`: needs the admin token; `what`: the call, for an error message."""

    async def __call__(
        self, method: Any, request: Any, *, retry: bool, admin: bool, what: str
    ) -> Any: ...


class ServiceCall:
    """How a service calls the registry: one attempt within `timeout_s`, the admin token
    (and who acts) on admin calls, and a refusal as the domain error of the registry's
    status (kit.grpc_client.upstream_error), so NOT_FOUND stays NOT_FOUND."""

    def __init__(self, timeout_s: float, admin_token: str | None = None, actor: str = "") -> None:
        self._timeout = timeout_s
        self._admin = admin_metadata(admin_token, actor=actor) if admin_token else None

    async def __call__(
        self, method: Any, request: Any, *, retry: bool, admin: bool, what: str
    ) -> Any:
        try:
            return await method(
                request, timeout=self._timeout, metadata=self._admin if admin else None
            )
        except grpc.aio.AioRpcError as error:
            raise upstream_error(error, what) from None


class RegistryClient:
    def __init__(self, channel: grpc.aio.Channel, call: RegistryCall) -> None:
        self.stub = registry_pb2_grpc.ModelRegistryStub(channel)
        self._call = call

    async def get(self, model: str, version_or_alias: str) -> registry_pb2.ModelVersion:
        """The record of a version, or of the version an alias points to."""
        record: registry_pb2.ModelVersion = await self._call(
            self.stub.GetModelVersion,
            registry_pb2.GetModelVersionRequest(
                model=common_pb2.ModelRef(model=model, version=version_or_alias)
            ),
            retry=True,
            admin=False,
            what=f"the registry on {model}:{version_or_alias}",
        )
        return record

    async def versions(self, model: str) -> list[registry_pb2.ModelVersion]:
        listed = await self._call(
            self.stub.ListModelVersions,
            registry_pb2.ListModelVersionsRequest(model=model),
            retry=True,
            admin=False,
            what=f"the registry's versions of {model}",
        )
        return list(listed.versions)

    async def lineage(self, model: str, version_or_alias: str) -> list[registry_pb2.ModelVersion]:
        chain = await self._call(
            self.stub.GetLineage,
            registry_pb2.GetModelVersionRequest(
                model=common_pb2.ModelRef(model=model, version=version_or_alias)
            ),
            retry=True,
            admin=False,
            what=f"the registry's lineage of {model}:{version_or_alias}",
        )
        return list(chain.versions)

    async def alias_history(self, model: str, alias: str = "") -> list[registry_pb2.AliasMove]:
        """The moves of `alias` (every alias when empty), oldest first."""
        history = await self._call(
            self.stub.GetAliasHistory,
            registry_pb2.GetAliasHistoryRequest(model=model, alias=alias),
            retry=True,
            admin=False,
            what=f"the registry's alias history of {model}",
        )
        return list(history.moves)

    async def resolve_alias(
        self, model: str, alias: str, at: dt.datetime | None = None
    ) -> registry_pb2.ModelVersion:
        """The version `alias` points to (pointed to at `at`, when given)."""
        request = registry_pb2.ResolveAliasRequest(model=model, alias=alias)
        if at is not None:
            request.at.FromDatetime(at)
        record: registry_pb2.ModelVersion = await self._call(
            self.stub.ResolveAlias,
            request,
            retry=True,
            admin=False,
            what=f"the registry on {model}'s alias {alias}",
        )
        return record

    async def set_alias(
        self, model: str, alias: str, version: str, expected_version: str, reason: str
    ) -> registry_pb2.AliasMove:
        """Move `alias` to `version` if it still points to `expected_version` ('' unset)."""
        move: registry_pb2.AliasMove = await self._call(
            self.stub.SetAlias,
            registry_pb2.SetAliasRequest(
                model=model,
                alias=alias,
                version=version,
                expected_version=expected_version,
                reason=reason,
            ),
            retry=False,
            admin=True,
            what=f"moving {model}'s alias {alias} to version {version}",
        )
        return move

    async def upload_artifact(self, data: bytes) -> str:
        """Store an artifact; its SHA-256, the name a version record refers to it by."""

        async def chunks() -> AsyncIterator[registry_pb2.ArtifactChunk]:
            for start in range(0, len(data), CHUNK):
                yield registry_pb2.ArtifactChunk(data=data[start : start + CHUNK])

        reference: registry_pb2.ArtifactRef = await self._call(
            self.stub.UploadArtifact,
            chunks(),
            retry=False,
            admin=True,
            what=f"uploading an artifact of {len(data):,} bytes",
        )
        return reference.sha256

    async def register(self, record: registry_pb2.ModelVersion) -> registry_pb2.ModelVersion:
        """Register a version of `record.model`; the registry numbers it."""
        registered: registry_pb2.ModelVersion = await self._call(
            self.stub.RegisterModelVersion,
            registry_pb2.RegisterModelVersionRequest(version=record),
            retry=False,
            admin=True,
            what=f"registering a version of {record.model}",
        )
        return registered
