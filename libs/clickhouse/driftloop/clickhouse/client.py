"""The async face of ClickHouse for event-loop code, and how a process opens it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa

from driftloop.clickhouse.backend import (
    ClickHouseBackend,
    ClickHouseError,
    Columns,
    EmbeddedBackend,
    Params,
    QueryResult,
    ServerBackend,
)
from driftloop.clickhouse.schema import schema_statements
from driftloop.kit.settings import ClickHouseSettings
from driftloop.kit.startup import Dependency, wait_for

log = logging.getLogger(__name__)


class ClickHouse:
    """Runs every statement in a worker thread, so the event loop never blocks on it."""

    def __init__(self, backend: ClickHouseBackend, database: str) -> None:
        self.backend = backend
        self.database = database

    @property
    def embedded(self) -> bool:
        """Whether the engine runs in this process (chDB) rather than on a server."""
        return isinstance(self.backend, EmbeddedBackend)

    def table(self, name: str) -> str:
        """The qualified name of one of our tables."""
        return f"{self.database}.{name}"

    async def ping(self) -> None:
        """Raise unless ClickHouse answers a trivial query."""
        await self.query("SELECT 1")

    async def command(self, sql: str, params: Params | None = None) -> None:
        await asyncio.to_thread(self.backend.command, sql, params)

    async def query(self, sql: str, params: Params | None = None) -> QueryResult:
        return await asyncio.to_thread(self.backend.query, sql, params)

    async def query_columns(self, sql: str, params: Params | None = None) -> Columns:
        """A columnar result as numpy arrays (for statistics over large windows)."""
        return await asyncio.to_thread(self.backend.query_columns, sql, params)

    async def query_arrow(self, sql: str, params: Params | None = None) -> pa.Table:
        """A columnar result as an Arrow table (list columns stay flat buffers)."""
        return await asyncio.to_thread(self.backend.query_arrow, sql, params)

    async def insert_arrow(self, table: str, data: pa.Table) -> int:
        """Insert an Arrow table (columns named and typed as the table's)."""
        return await asyncio.to_thread(self.backend.insert_arrow, self.table(table), data)

    async def insert(
        self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> int:
        return await asyncio.to_thread(self.backend.insert, self.table(table), columns, rows)

    async def apply_schema(self, cluster: str | None = None) -> int:
        """Create whatever the schema has that the database lacks; return the statement count."""
        statements = schema_statements(self.database, cluster)
        for statement in statements:
            await self.command(statement)
        return len(statements)

    async def close(self) -> None:
        await asyncio.to_thread(self.backend.close)


def open_backend(settings: ClickHouseSettings) -> ClickHouseBackend:
    """The server named by the URL, else the embedded engine in the configured folder."""
    if settings.url is not None:
        log.info("using the ClickHouse server", extra={"database": settings.database})
        return ServerBackend(settings.url.get_secret_value(), settings.database)
    log.info("using embedded ClickHouse", extra={"path": str(settings.path)})
    return EmbeddedBackend(settings.path)


async def open_clickhouse(settings: ClickHouseSettings) -> ClickHouse:
    """Open ClickHouse and bring the schema up to date."""
    backend = await asyncio.to_thread(open_backend, settings)
    clickhouse = ClickHouse(backend, settings.database)
    try:
        await clickhouse.apply_schema(settings.cluster)
    except BaseException:
        await clickhouse.close()
        raise
    return clickhouse


async def service_clickhouse(settings: ClickHouseSettings) -> ClickHouse:
    """ClickHouse for a service on its own: a server that does not answer yet is waited
    for; an embedded folder another process holds cannot get better by waiting
    (`FolderInUse` says so in one line)."""
    if settings.url is None:
        return await open_clickhouse(settings)
    where = server_address(settings.url.get_secret_value())
    return await wait_for(
        Dependency("ClickHouse", where, "DRIFTLOOP_CLICKHOUSE_URL"),
        lambda: open_clickhouse(settings),
        retry_on=(ClickHouseError,),
    )


def server_address(url: str) -> str:
    """scheme://host:port of a ClickHouse URL: no user, no password."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}"
