"""The two ways to reach ClickHouse, behind one small protocol.

- `EmbeddedBackend`: chDB, the ClickHouse engine in this process, data in a local folder.
  One process may open a folder (a lock file enforces it) and chDB allows one folder per
  process, so a process shares one backend between all its services.
- `ServerBackend`: a ClickHouse server through clickhouse-connect (HTTP).
Both take the same SQL with `{name:Type}` parameters, bound by ClickHouse itself (never
formatted into the text), and return the same Python values.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import math
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

import numpy.typing as npt
import pyarrow as pa
import pyarrow.ipc
from clickhouse_connect.driver.exceptions import ClickHouseError as ClickHouseConnectError

from driftloop.kit.errors import CannotStart

Params = Mapping[str, Any]
# A columnar result (statistics over large windows): column name -> numpy array.
Columns = dict[str, npt.NDArray[Any]]


class ClickHouseError(RuntimeError):
    """A statement failed in ClickHouse; the message is ClickHouse's own."""


class FolderInUse(ClickHouseError, CannotStart):
    """The embedded engine's folder is held by another process: waiting would not help."""


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]

    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows else None


class ClickHouseBackend(Protocol):
    """Blocking access to ClickHouse. Use `ClickHouse` (async) from event-loop code."""

    def command(self, sql: str, params: Params | None = None) -> None: ...

    def query(self, sql: str, params: Params | None = None) -> QueryResult: ...

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> int: ...

    def query_columns(self, sql: str, params: Params | None = None) -> Columns: ...

    def query_arrow(self, sql: str, params: Params | None = None) -> pa.Table: ...

    def insert_arrow(self, table: str, data: pa.Table) -> int: ...

    def close(self) -> None: ...


class EmbeddedBackend:
    """chDB in a local folder. Thread-safe: statements run one at a time."""

    def __init__(self, path: Path) -> None:
        from chdb import session  # imported here: loading the engine takes ~1 s

        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock_file: IO[str] | None = _lock_folder(path)
        self._lock = threading.Lock()
        try:
            self._session = session.Session(str(path))  # type: ignore[no-untyped-call]  # chDB is untyped
        except RuntimeError as error:
            self._release_folder()
            raise ClickHouseError(f"cannot open embedded ClickHouse in {path}: {error}") from None
        for setting in (
            "output_format_json_quote_64bit_integers = 0",
            "output_format_json_quote_denormals = 1",
            # Arrow results stay in this process: compressing them (lz4_frame by default)
            # only costs CPU twice, about 30 ms for a 100k x 20 window.
            "output_format_arrow_compression_method = 'none'",
        ):
            self._run(f"SET {setting}", None, "CSV")

    def command(self, sql: str, params: Params | None = None) -> None:
        self._run(sql, params, "CSV")

    def query(self, sql: str, params: Params | None = None) -> QueryResult:
        text = self._run(sql, params, "JSONCompact")
        if not text.strip():
            return QueryResult([], [])
        payload = json.loads(text)
        meta = payload["meta"]
        converters = [_converter(column["type"]) for column in meta]
        rows = [
            tuple(convert(value) for convert, value in zip(converters, row, strict=True))
            for row in payload["data"]
        ]
        return QueryResult([column["name"] for column in meta], rows)

    def query_columns(self, sql: str, params: Params | None = None) -> Columns:
        return numpy_columns(self.query_arrow(sql, params))

    def query_arrow(self, sql: str, params: Params | None = None) -> pa.Table:
        with self._lock:
            try:
                result = self._session.query(  # type: ignore[no-untyped-call]  # chDB is untyped
                    sql, "Arrow", params=_embedded_params(params)
                )
            except RuntimeError as error:
                raise ClickHouseError(str(error)) from None
            data = result.bytes()
        return pyarrow.ipc.open_file(pa.py_buffer(data)).read_all()

    def insert_arrow(self, table: str, data: pa.Table) -> int:
        """Insert an Arrow table whose column names and types match the table's (fast:
        columnar, no per-row text)."""
        sink = pa.BufferOutputStream()
        with pyarrow.ipc.new_stream(sink, data.schema) as writer:
            writer.write_table(data)
        self._insert_file(table, data.column_names, sink.getvalue().to_pybytes(), "ArrowStream")
        return int(data.num_rows)

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> int:
        if not rows:
            return 0
        lines = "".join(
            json.dumps(dict(zip(columns, row, strict=True)), default=_json_value) + "\n"
            for row in rows
        )
        self._insert_file(table, columns, lines.encode(), "JSONEachRow")
        return len(rows)

    def _insert_file(self, table: str, columns: Sequence[str], data: bytes, fmt: str) -> None:
        """INSERT ... FROM INFILE: unlike chDB's streaming insert, which reports the rows as
        written when the engine refused them (a violated constraint, say), a statement
        raises the engine's error, so a refused insert is never taken for a stored one."""
        staging = self.path / ".inserts"
        staging.mkdir(exist_ok=True)
        file = staging / f"{uuid.uuid4().hex}.{fmt.lower()}"
        file.write_bytes(data)
        try:
            self._run(
                f"INSERT INTO {table} ({', '.join(columns)}) "
                f"FROM INFILE '{_quoted_path(file)}' FORMAT {fmt}",
                None,
                "CSV",
            )
        except ClickHouseError as error:
            raise ClickHouseError(f"insert into {table} failed: {error}") from None
        finally:
            file.unlink(missing_ok=True)

    def close(self) -> None:
        with self._lock:
            self._session.close()  # type: ignore[no-untyped-call]  # chDB is untyped
        self._release_folder()

    def _run(self, sql: str, params: Params | None, fmt: str) -> str:
        with self._lock:
            try:
                result = self._session.query(  # type: ignore[no-untyped-call]  # chDB is untyped
                    sql, fmt, params=_embedded_params(params)
                )
            except RuntimeError as error:
                raise ClickHouseError(str(error)) from None
        return result.data() if hasattr(result, "data") else str(result)

    def _release_folder(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None


class ServerBackend:
    """A ClickHouse server over HTTP(S) with clickhouse-connect."""

    def __init__(self, url: str, database: str) -> None:
        import clickhouse_connect

        try:
            self._client = clickhouse_connect.get_client(dsn=url, database="default")
        except (ClickHouseConnectError, OSError) as error:
            # The URL may hold a password: name the failure, never the URL.
            raise ClickHouseError(f"cannot connect to the ClickHouse server: {error}") from None
        self._lock = threading.Lock()
        self.database = database

    def command(self, sql: str, params: Params | None = None) -> None:
        with self._lock:
            try:
                self._client.command(sql, parameters=dict(params) if params else None)
            except (ClickHouseConnectError, OSError) as error:
                raise ClickHouseError(str(error)) from None

    def query(self, sql: str, params: Params | None = None) -> QueryResult:
        with self._lock:
            try:
                result = self._client.query(sql, parameters=dict(params) if params else None)
            except (ClickHouseConnectError, OSError) as error:
                raise ClickHouseError(str(error)) from None
        return QueryResult(list(result.column_names), [tuple(row) for row in result.result_rows])

    def query_columns(self, sql: str, params: Params | None = None) -> Columns:
        return numpy_columns(self.query_arrow(sql, params))

    def query_arrow(self, sql: str, params: Params | None = None) -> pa.Table:
        with self._lock:
            try:
                table = self._client.query_arrow(sql, parameters=dict(params) if params else None)
            except (ClickHouseConnectError, OSError) as error:
                raise ClickHouseError(str(error)) from None
        return table

    def insert_arrow(self, table: str, data: pa.Table) -> int:
        database, _, name = table.rpartition(".")
        with self._lock:
            try:
                self._client.insert_arrow(name, data, database=database or None)
            except (ClickHouseConnectError, OSError) as error:
                raise ClickHouseError(f"insert into {table} failed: {error}") from None
        return int(data.num_rows)

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> int:
        if not rows:
            return 0
        database, _, name = table.rpartition(".")
        with self._lock:
            try:
                self._client.insert(
                    name, list(rows), column_names=list(columns), database=database or None
                )
            except (ClickHouseConnectError, OSError) as error:
                raise ClickHouseError(f"insert into {table} failed: {error}") from None
        return len(rows)

    def close(self) -> None:
        self._client.close()


def numpy_columns(table: pa.Table) -> Columns:
    """An Arrow result as `Columns` (a list column becomes an object array of arrays)."""
    return {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}


def _lock_folder(path: Path) -> IO[str]:
    handle = (path / ".driftloop.lock").open("w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise FolderInUse(
            f"the embedded ClickHouse folder {path} is open in another process, and only one "
            "process may use it: run the services together in one process with `driftloop "
            "up`, or point them all at a ClickHouse server with DRIFTLOOP_CLICKHOUSE_URL (or "
            "give this one another DRIFTLOOP_CLICKHOUSE_PATH)"
        ) from None
    return handle


def _quoted_path(path: Path) -> str:
    return str(path).replace("\\", "\\\\").replace("'", "\\'")


def _embedded_params(params: Params | None) -> dict[str, Any] | None:
    """chDB binds text: datetimes go in ClickHouse's own format, in UTC; strings escaped as
    ClickHouse parses a parameter's value (a raw "a\\b" would arrive as "a\\x08", and a
    newline or a tab would be refused)."""
    if not params:
        return None
    return {name: _embedded_value(value) for name, value in params.items()}


def _embedded_value(value: Any) -> Any:
    if isinstance(value, dt.date):
        return _json_value(value)
    if isinstance(value, str):
        return _escaped(value)
    if isinstance(value, list | tuple):
        # An Array parameter is parsed as a ClickHouse literal: ['a', 'b'].
        return "[" + ", ".join(_literal(item) for item in value) + "]"
    return value


def _literal(value: Any) -> str:
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float):
        return repr(value)
    raise TypeError(f"cannot bind {type(value).__name__} inside an array parameter")


_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r", "\0": "\\0"})


def _escaped(value: str) -> str:
    return value.translate(_ESCAPES)


def _json_value(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, dt.date):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} to ClickHouse")


def _converter(type_name: str) -> Any:
    """A function turning chDB's JSON value of `type_name` into the Python value."""
    inner = type_name
    nullable = inner.startswith("Nullable(")
    if nullable:
        inner = inner[len("Nullable(") : -1]
    if inner.startswith("LowCardinality("):
        inner = inner[len("LowCardinality(") : -1]
    base: Any
    if inner.startswith("DateTime"):
        base = _parse_datetime
    elif inner.startswith("Float"):
        base = _parse_float
    elif inner.startswith("Date"):
        base = dt.date.fromisoformat
    else:
        base = _identity
    if not nullable:
        return base
    return lambda value: None if value is None else base(value)


def _identity(value: Any) -> Any:
    return value


def _parse_float(value: Any) -> float:
    if isinstance(value, str):
        return {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}.get(value, math.nan)
    return float(value)


def _parse_datetime(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC)
