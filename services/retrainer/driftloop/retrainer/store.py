"""The registry's tables in ClickHouse (model_versions, alias_history, data_snapshots).

A version's full record is kept as its serialised ModelVersion message (the `record`
column): one encoding, the API's, already versioned and the one earlier rows hold.
"""

from __future__ import annotations

import base64
import datetime as dt

from driftloop.clickhouse.client import ClickHouse
from driftloop.retrainer.registry import AliasMove, VersionRecord
from driftloop.retrainer.version_proto import version_from_proto, version_to_proto
from driftloop.v1 import registry_pb2

VERSION_COLUMNS = (
    "model",
    "version",
    "created",
    "created_by",
    "flavor",
    "artifact_sha256",
    "parent_version",
    "code_version",
    "data_sha256",
    "data_rows",
    "seed",
    "metrics",
    "tags",
    "record",
)
MOVE_COLUMNS = ("model", "alias", "version", "previous_version", "actor", "reason", "time", "seq")
SNAPSHOT_COLUMNS = (
    "content_sha256",
    "source",
    "window_start",
    "window_end",
    "row_count",
    "first_seen",
)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class ClickHouseRegistryStore:
    def __init__(self, clickhouse: ClickHouse) -> None:
        self._ch = clickhouse

    async def models(self) -> list[str]:
        result = await self._ch.query(
            f"SELECT DISTINCT model FROM {self._ch.table('model_versions')} ORDER BY model"
        )
        return [str(row[0]) for row in result.rows]

    async def max_version(self, model: str) -> int:
        result = await self._ch.query(
            f"SELECT max(version) FROM {self._ch.table('model_versions')} FINAL "
            "WHERE model = {model:String}",
            {"model": model},
        )
        return int(result.scalar() or 0)

    async def insert_version(self, record: VersionRecord) -> None:
        data = record.data
        await self._ch.insert(
            "model_versions",
            VERSION_COLUMNS,
            [
                (
                    record.model,
                    int(record.version),
                    record.created,
                    record.created_by,
                    record.flavor,
                    record.artifact_sha256,
                    record.parent_version,
                    record.code_version,
                    data.content_sha256,
                    data.row_count,
                    record.seed,
                    dict(record.metrics),
                    dict(record.tags),
                    base64.b64encode(version_to_proto(record).SerializeToString()).decode(),
                )
            ],
        )
        if data.content_sha256:
            await self._ch.insert(
                "data_snapshots",
                SNAPSHOT_COLUMNS,
                [
                    (
                        data.content_sha256,
                        data.source,
                        data.window_start or EPOCH,
                        data.window_end or EPOCH,
                        data.row_count,
                        record.created,
                    )
                ],
            )

    async def get_version(self, model: str, version: int) -> VersionRecord | None:
        result = await self._ch.query(
            f"SELECT record FROM {self._ch.table('model_versions')} FINAL "
            "WHERE model = {model:String} AND version = {version:UInt32}",
            {"model": model, "version": version},
        )
        if not result.rows:
            return None
        return _decoded(result.rows[0][0])

    async def list_versions(self, model: str) -> list[VersionRecord]:
        result = await self._ch.query(
            f"SELECT record FROM {self._ch.table('model_versions')} FINAL "
            "WHERE model = {model:String} ORDER BY version",
            {"model": model},
        )
        return [_decoded(row[0]) for row in result.rows]

    async def insert_alias_move(self, move: AliasMove) -> None:
        await self._ch.insert(
            "alias_history",
            MOVE_COLUMNS,
            [
                (
                    move.model,
                    move.alias,
                    move.version,
                    move.previous_version,
                    move.actor,
                    move.reason,
                    move.time,
                    move.seq,
                )
            ],
        )

    async def alias_moves(self, model: str, alias: str | None) -> list[AliasMove]:
        where = "model = {model:String}" + (" AND alias = {alias:String}" if alias else "")
        result = await self._ch.query(
            f"SELECT {', '.join(MOVE_COLUMNS)} FROM {self._ch.table('alias_history')} FINAL "
            f"WHERE {where} ORDER BY seq",
            {"model": model, "alias": alias or ""},
        )
        return [
            AliasMove(
                model=m,
                alias=a,
                version=v,
                previous_version=p,
                actor=ac,
                reason=r,
                time=t,
                seq=int(s),
            )
            for m, a, v, p, ac, r, t, s in result.rows
        ]


def _decoded(record: str) -> VersionRecord:
    return version_from_proto(registry_pb2.ModelVersion.FromString(base64.b64decode(record)))
