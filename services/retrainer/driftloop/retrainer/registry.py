"""The model registry core: versions, lineage, aliases with compare-and-set, history.

Transport-free: it takes a `NewVersion`, keeps `VersionRecord`s through a `RegistryStore`
and announces through a `ModelEventSink`; the servicer converts the ModelVersion message
(version_proto.py). Version numbers are assigned here, one model at a time (a lock per
model): the registry has one writer, the retrainer service.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Protocol

from driftloop.kit.errors import FailedPrecondition, InvalidArgument, NotFound
from driftloop.kit.names import (
    check_alias,
    check_name,
    check_version,
    check_version_ref,
    is_version_number,
)
from driftloop.kit.times import stamp
from driftloop.models import sklearn_flavor
from driftloop.models.artifacts import ArtifactStore, sha256_of
from driftloop.models.loading import FLAVORS
from driftloop.models.python_flavor import ENTRY_POINT
from driftloop.models.schema import OutputKind, Schema
from driftloop.v1 import events_pb2, registry_pb2


@dataclass(frozen=True)
class DataLineage:
    """The data a version was trained on (or whose predictions make its drift baseline)."""

    source: str = ""
    row_count: int = 0
    content_sha256: str = ""
    window_start: dt.datetime | None = None
    window_end: dt.datetime | None = None


@dataclass(frozen=True, kw_only=True)
class NewVersion:
    """What a registrant supplies; the registry adds the version number and the time.

    `baseline` stays the API's Baseline message, an opaque payload here: the registry only
    stores and serves it, and its readers (drift, the retrainer) convert it themselves.
    None when the registrant gave none.
    """

    model: str
    flavor: str
    artifact_sha256: str
    schema: Schema
    output_kind: OutputKind
    entry_point: str = ""
    pickle_trusted: bool = False
    parent_version: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    data: DataLineage = DataLineage()
    metrics: Mapping[str, float] = field(default_factory=dict)
    hyperparameters: Mapping[str, str] = field(default_factory=dict)
    seed: int = 0
    code_version: str = ""
    environment: Mapping[str, str] = field(default_factory=dict)
    baseline: registry_pb2.Baseline | None = None
    created_by: str = ""


@dataclass(frozen=True, kw_only=True)
class VersionRecord(NewVersion):
    """A registered version: what was supplied, its number, when, and its aliases now."""

    version: str
    created: dt.datetime
    aliases: tuple[str, ...] = ()

    @classmethod
    def of(
        cls, new: NewVersion, version: str, created: dt.datetime, aliases: tuple[str, ...] = ()
    ) -> VersionRecord:
        supplied = {f.name: getattr(new, f.name) for f in fields(NewVersion)}
        return cls(**supplied, version=version, created=created, aliases=aliases)


def check_identity(model: str, flavor: str) -> None:
    """The first checks of a registration (the converter runs them before parsing the
    rest, so a request with several faults is answered about the same one as always)."""
    check_name("version.model", model, "model name")
    if flavor not in FLAVORS:
        raise InvalidArgument("version.flavor", f"must be one of {', '.join(FLAVORS)}")


@dataclass(frozen=True)
class AliasMove:
    model: str
    alias: str
    version: str
    previous_version: str
    actor: str
    reason: str
    time: dt.datetime
    seq: int


class RegistryStore(Protocol):
    async def models(self) -> list[str]: ...

    async def max_version(self, model: str) -> int: ...

    async def insert_version(self, record: VersionRecord) -> None: ...

    async def get_version(self, model: str, version: int) -> VersionRecord | None: ...

    async def list_versions(self, model: str) -> list[VersionRecord]: ...

    async def insert_alias_move(self, move: AliasMove) -> None: ...

    async def alias_moves(self, model: str, alias: str | None) -> list[AliasMove]:
        """Moves in the order they happened."""
        ...


class ModelEventSink(Protocol):
    async def publish(self, event: events_pb2.ModelEvent) -> None: ...


class Registry:
    def __init__(
        self, store: RegistryStore, artifacts: ArtifactStore, events: ModelEventSink
    ) -> None:
        self._store = store
        self._artifacts = artifacts
        self._events = events
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def upload(self, chunks: list[tuple[bytes, str]]) -> tuple[str, int]:
        """Store an artifact; return its SHA-256 and size."""
        data = b"".join(part for part, _ in chunks)
        expected = {digest for _, digest in chunks if digest}
        if not data:
            raise InvalidArgument("data", "the artifact is empty")
        digest = sha256_of(data)
        if expected and expected != {digest}:
            raise InvalidArgument(
                "expected_sha256",
                f"the uploaded bytes hash to {digest}, not {', '.join(sorted(expected))}",
            )
        await asyncio.to_thread(self._artifacts.put, data)
        return digest, len(data)

    async def register(self, new: NewVersion, actor: str) -> VersionRecord:
        """Validate and store a new version; it gets the model's next version number."""
        # Off the loop: it reads and hashes the artifact (and a sklearn one's contents).
        await asyncio.to_thread(self._validate, new)
        async with self._locks[new.model]:
            if new.parent_version:
                await self.get(new.model, new.parent_version)
            now = dt.datetime.now(dt.UTC)
            record = VersionRecord.of(
                replace(new, created_by=new.created_by or actor),
                version=str(await self._store.max_version(new.model) + 1),
                created=now,
            )
            await self._store.insert_version(record)
        await self._events.publish(
            events_pb2.ModelEvent(
                kind=events_pb2.MODEL_EVENT_KIND_REGISTERED,
                model=record.model,
                version=record.version,
                reason=f"registered by {record.created_by}",
                actor=actor,
                time=stamp(now),
            )
        )
        return record

    def _validate(self, new: NewVersion) -> None:
        check_identity(new.model, new.flavor)
        if new.flavor == "python" and not ENTRY_POINT.fullmatch(new.entry_point):
            raise InvalidArgument("version.entry_point", "the python flavor needs module:Class")
        data = self._artifacts.get(new.artifact_sha256)  # exists and verifies, or raises
        if new.flavor == sklearn_flavor.FLAVOR:
            sklearn_flavor.check_trust(data, new.pickle_trusted)

    async def get(self, model: str, version_or_alias: str) -> VersionRecord:
        check_name("model.model", model, "model name")
        check_version_ref("model.version", version_or_alias)
        if is_version_number(version_or_alias):
            version = version_or_alias
        else:
            version = await self.resolve(model, version_or_alias, None)
        record = await self._store.get_version(model, int(version))
        if record is None:
            raise NotFound(f"model {model!r} has no version {version}")
        return _with_aliases(record, await self._current_aliases(model))

    async def versions(self, model: str) -> list[VersionRecord]:
        check_name("model", model, "model name")
        records = await self._store.list_versions(model)
        current = await self._current_aliases(model)
        return [_with_aliases(record, current) for record in records]

    async def lineage(self, model: str, version_or_alias: str) -> list[VersionRecord]:
        """The version, its parent, the parent's parent... (the version first)."""
        chain = [await self.get(model, version_or_alias)]
        seen = {chain[0].version}
        while chain[-1].parent_version:
            parent = await self.get(model, chain[-1].parent_version)
            if parent.version in seen:
                raise FailedPrecondition(f"lineage of {model} loops at version {parent.version}")
            seen.add(parent.version)
            chain.append(parent)
        return chain

    async def set_alias(
        self, model: str, alias: str, version: str, expected: str, reason: str, actor: str
    ) -> AliasMove:
        check_name("model", model, "model name")
        check_alias("alias", alias)
        check_version("version", version)
        async with self._locks[model]:
            if await self._store.get_version(model, int(version)) is None:
                raise NotFound(f"model {model!r} has no version {version}")
            moves = await self._store.alias_moves(model, alias)
            current = moves[-1].version if moves else ""
            if current != expected:
                raise FailedPrecondition(
                    f"alias {alias!r} of {model!r} points to "
                    f"{'version ' + current if current else 'nothing'}, not "
                    f"{'version ' + expected if expected else 'nothing'} as expected; "
                    "read it again and retry"
                )
            now = dt.datetime.now(dt.UTC)
            seq = max(time.time_ns(), moves[-1].seq + 1 if moves else 0)
            move = AliasMove(model, alias, version, current, actor, reason, now, seq)
            await self._store.insert_alias_move(move)
        await self._events.publish(
            events_pb2.ModelEvent(
                kind=events_pb2.MODEL_EVENT_KIND_ALIAS_MOVED,
                model=model,
                version=version,
                alias=alias,
                previous_version=current,
                reason=reason,
                actor=actor,
                time=stamp(now),
            )
        )
        return move

    async def resolve(self, model: str, alias: str, at: dt.datetime | None) -> str:
        """The version `alias` pointed to at `at` (now when None)."""
        moves = await self._store.alias_moves(model, alias)
        chosen = [move for move in moves if at is None or move.time <= at]
        if not chosen:
            when = f"at {at.isoformat()}" if at else "now"
            raise NotFound(f"alias {alias!r} of model {model!r} pointed to no version {when}")
        return chosen[-1].version

    async def history(self, model: str, alias: str | None) -> list[AliasMove]:
        check_name("model", model, "model name")
        return await self._store.alias_moves(model, alias or None)

    async def current_alias(self, model: str, alias: str) -> str:
        """The version `alias` points to now ("" when it points nowhere yet)."""
        moves = await self._store.alias_moves(model, alias)
        return moves[-1].version if moves else ""

    async def models(self) -> list[str]:
        """Every model with a registered version."""
        return await self._store.models()

    async def _current_aliases(self, model: str) -> dict[str, str]:
        current: dict[str, str] = {}
        for move in await self._store.alias_moves(model, None):
            current[move.alias] = move.version
        return current


def _with_aliases(record: VersionRecord, current: Mapping[str, str]) -> VersionRecord:
    pointing = sorted(alias for alias, version in current.items() if version == record.version)
    return replace(record, aliases=tuple(pointing))
