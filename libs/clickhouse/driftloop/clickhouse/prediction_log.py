"""The prediction log in ClickHouse: writing prediction and label events, reading windows.

Rows are keyed by their natural key (model, version, role, time, request_id for
predictions; request_id for labels), and every read uses FINAL, so writing the same
event twice (a Kafka re-delivery) never counts it twice.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from driftloop.clickhouse.backend import Columns
from driftloop.clickhouse.client import ClickHouse
from driftloop.kafka.codecs import WirePrediction
from driftloop.kafka.wire import PredictionColumns, prediction_columns
from driftloop.v1 import common_pb2, events_pb2

PREDICTION_COLUMNS = (
    "request_id",
    "time",
    "model",
    "version",
    "role",
    "variant",
    "entity_key",
    "numbers",
    "categories",
    "output_kind",
    "output_value",
    "output_label",
    "output_probabilities",
    "latency_us",
    "error",
)
TIME = pa.timestamp("us", tz="UTC")
PREDICTION_SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("time", TIME),
        ("model", pa.string()),
        ("version", pa.string()),
        ("role", pa.string()),
        ("variant", pa.string()),
        ("entity_key", pa.string()),
        ("numbers", pa.map_(pa.string(), pa.float64())),
        ("categories", pa.map_(pa.string(), pa.string())),
        ("output_kind", pa.string()),
        ("output_value", pa.float64()),
        ("output_label", pa.string()),
        ("output_probabilities", pa.map_(pa.string(), pa.float64())),
        ("latency_us", pa.uint32()),
        ("error", pa.string()),
    ]
)
LABEL_SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("time", TIME),
        ("truth_kind", pa.string()),
        ("label", pa.string()),
        ("value", pa.float64()),
        ("source", pa.string()),
    ]
)

_ROLES = {
    common_pb2.ROLE_UNSPECIFIED: "unspecified",
    common_pb2.ROLE_LIVE: "live",
    common_pb2.ROLE_SHADOW: "shadow",
}
_OUTPUT_KINDS = {
    common_pb2.OUTPUT_KIND_UNSPECIFIED: "unspecified",
    common_pb2.OUTPUT_KIND_BINARY: "binary",
    common_pb2.OUTPUT_KIND_MULTICLASS: "multiclass",
    common_pb2.OUTPUT_KIND_REGRESSION: "regression",
}


def _micros(stamp: Timestamp) -> int:
    return stamp.seconds * 1_000_000 + stamp.nanos // 1000


def split_events(
    events: Iterable[Message],
) -> tuple[list[events_pb2.PredictionEvent], list[events_pb2.LabelEvent]]:
    """A consumer batch's events as (predictions, labels)."""
    predictions: list[events_pb2.PredictionEvent] = []
    labels: list[events_pb2.LabelEvent] = []
    for event in events:
        if isinstance(event, events_pb2.PredictionEvent):
            predictions.append(event)
        elif isinstance(event, events_pb2.LabelEvent):
            labels.append(event)
        else:
            raise TypeError(f"not a prediction or label event: {type(event).__name__}")
    return predictions, labels


def prediction_table(
    events: Sequence[events_pb2.PredictionEvent], raws: Sequence[bytes] | None = None
) -> pa.Table:
    """Prediction events as an Arrow table of the predictions columns (the fast insert).

    `raws`: the events' wire bytes when the caller has them (a consumer batch), else they
    are serialised here. The columns are read from the bytes for the whole batch at once
    (driftloop.kafka.wire): through the message API, a 20-feature event cost about 25 µs
    of Python. An event the reader cannot take as it is (a submessage sent in two pieces,
    a group among its unknown fields) is read again from its message re-serialised
    without unknown fields, which is always readable."""
    wire_bytes = [event.SerializeToString() for event in events] if raws is None else raws
    read = prediction_columns(wire_bytes)
    if read.unread.any():
        wire_bytes = list(wire_bytes)
        for row in np.flatnonzero(read.unread).tolist():
            wire_bytes[row] = _without_unknown_fields(events[row])
        read = prediction_columns(wire_bytes)
        if read.unread.any():
            raise ValueError("an event is unreadable from its own serialisation")
    return columns_table(read)


def columns_table(read: PredictionColumns) -> pa.Table:
    """A batch's columns as read from the wire, as an Arrow table of the predictions
    columns (every row, read or not: the caller picks the rows it vouches for)."""
    arrays = {
        "request_id": read.request_id,
        "time": pa.array(read.time_us, pa.int64()).cast(TIME),
        "model": read.model,
        "version": read.version,
        "role": _names(read.role, _ROLES),
        "variant": read.variant,
        "entity_key": read.entity_key,
        "numbers": read.numbers,
        "categories": read.categories,
        "output_kind": _names(read.output_kind, _OUTPUT_KINDS),
        "output_value": pa.array(read.output_value, pa.float64()),
        "output_label": read.output_label,
        "output_probabilities": read.output_probabilities,
        "latency_us": pa.array(read.latency_us, pa.uint32()),
        "error": read.error,
    }
    return pa.Table.from_pydict(arrays, schema=PREDICTION_SCHEMA)


def logged_table(
    values: Sequence[events_pb2.PredictionEvent | WirePrediction], raws: Sequence[bytes]
) -> pa.Table:
    """A consumer batch's predictions as one table, in order: WirePredictions as the rows
    of their batch's columns (read once, by the decoder), messages as `prediction_table`
    builds them (`raws`: their wire bytes, b'' where a record has none). Consecutive rows
    of one batch, as the consumer hands them, are a slice of its table (no copy)."""
    pieces: list[pa.Table] = []
    tables: dict[int, pa.Table] = {}
    at = 0
    for batch, run in itertools.groupby(values, _batch):
        group = list(run)
        first = group[0]
        if not isinstance(first, WirePrediction):
            events = [value for value in group if not isinstance(value, WirePrediction)]
            wire = [
                raw or event.SerializeToString()
                for raw, event in zip(raws[at : at + len(group)], events, strict=True)
            ]
            pieces.append(prediction_table(events, wire))
        else:
            table = tables.get(batch)
            if table is None:
                table = tables[batch] = columns_table(first.columns)
            rows = np.fromiter(
                (value.row for value in group if isinstance(value, WirePrediction)),
                dtype=np.int64,
                count=len(group),
            )
            if (np.diff(rows) == 1).all():
                pieces.append(table.slice(int(rows[0]), rows.size))
            else:
                pieces.append(table.take(pa.array(rows)))
        at += len(group)
    if not pieces:
        return prediction_table([])
    return pieces[0] if len(pieces) == 1 else pa.concat_tables(pieces)


def _batch(value: events_pb2.PredictionEvent | WirePrediction) -> int:
    """Which batch's columns a prediction is a row of, by identity (0: a message)."""
    return id(value.columns) if isinstance(value, WirePrediction) else 0


def _names(numbers: npt.NDArray[np.int64], names: Mapping[Any, str]) -> pa.Array:
    """An enum column as its names ('unspecified' for a number this version lacks)."""
    known = sorted(names)
    index = pa.array(np.searchsorted(known, numbers).clip(0, len(known) - 1), pa.int32())
    valid = np.isin(numbers, known)
    chosen = pa.array([names[number] for number in known], pa.string()).take(index)
    return pc.if_else(pa.array(valid), chosen, "unspecified")


def _without_unknown_fields(event: events_pb2.PredictionEvent) -> bytes:
    copy = events_pb2.PredictionEvent()
    copy.CopyFrom(event)
    copy.DiscardUnknownFields()
    return copy.SerializeToString()


def label_table(events: Sequence[events_pb2.LabelEvent]) -> pa.Table:
    columns: dict[str, list[Any]] = {name: [] for name in LABEL_SCHEMA.names}
    for event in events:
        columns["request_id"].append(event.request_id)
        columns["time"].append(_micros(event.time))
        columns["truth_kind"].append("label" if event.WhichOneof("truth") == "label" else "value")
        columns["label"].append(event.label)
        columns["value"].append(event.value)
        columns["source"].append(event.source)
    return pa.Table.from_pydict(columns, schema=LABEL_SCHEMA)


@dataclass(frozen=True)
class WindowCounts:
    rows: int
    labelled: int
    errors: int


@dataclass(frozen=True)
class Traffic:
    """Which live predictions a window holds: of `model`; of `versions` (every version when
    empty); served at or after `start` and before `end` when given; of those the newest
    `last_n` when nonzero; answered ones only unless `failures` (a failed call, logged with
    its error, has no answer to judge)."""

    model: str
    versions: tuple[str, ...] = ()
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    last_n: int = 0
    failures: bool = False


def feature_columns(
    numeric: Sequence[str], categorical: Sequence[str]
) -> tuple[list[str], dict[str, Any]]:
    """The select expressions n0.. (a numeric feature, NaN when missing) and c0.. (a
    category, '' when missing) and their parameters: feature names are bound, never
    formatted into the SQL."""
    columns: list[str] = []
    params: dict[str, Any] = {}
    for index, name in enumerate(numeric):
        params[f"n{index}"] = name
        columns.append(
            f"if(mapContains(numbers, {{n{index}:String}}), numbers[{{n{index}:String}}], "
            f"nan) AS n{index}"
        )
    for index, name in enumerate(categorical):
        params[f"c{index}"] = name
        columns.append(f"categories[{{c{index}:String}}] AS c{index}")
    return columns, params


def number_values_columns(keys: Sequence[str]) -> tuple[list[str], dict[str, Any]]:
    """The select expressions that read a window's numeric features as one flat array,
    and their parameter: `same_keys`, whether the row's numbers map holds exactly `keys`
    in that order, and `number_values`, the map's values in the row's own order. In a row
    with `same_keys`, the feature keys[i] is number_values[i], found without a lookup by
    name: reading the values once and comparing the keys once costs ClickHouse about half
    as much as 20 lookups by name (`feature_columns`; measured on 100k rows x 20)."""
    columns = [
        "numbers.keys = {number_keys:Array(String)} AS same_keys",
        "numbers.values AS number_values",
    ]
    return columns, {"number_keys": list(keys)}


def newest_keys_query(clickhouse: ClickHouse, traffic: Traffic) -> tuple[str, dict[str, Any]]:
    """The query of the names in the numbers map of `traffic`'s newest prediction, in the
    map's order (one row, one Array(String) column `keys`; no row when there is none),
    and its parameters: the order to try with `number_values_columns`."""
    where, params = _traffic_filter(traffic)
    sql = (
        f"SELECT numbers.keys AS keys FROM {clickhouse.table('predictions')} "
        f"WHERE {' AND '.join(where)} ORDER BY time DESC LIMIT 1"
    )
    return sql, params


def labelled_window_query(
    clickhouse: ClickHouse,
    traffic: Traffic,
    columns: Sequence[str] = (),
    *,
    labelled_only: bool = False,
) -> tuple[str, dict[str, Any]]:
    """The one query of predictions with their labels, and its parameters: the drift
    report's windows, the canary analysis, the rollout history's quality, training data,
    the retrainer's counts and the tests all read it.

    `p` is the window's predictions (request_id, time, then `columns`: columns or aliased
    expressions of the predictions table), read FINAL, so a re-delivered event counts once.
    `l` is the labels of p's request ids only, FINAL, so a corrected label replaces the
    first: the right side of a ClickHouse join is built into a hash table, and this keeps
    it the window's labels rather than every label. A LEFT JOIN keeps the unlabelled rows
    (labelled false, the label columns at their defaults: '', 0, label_time_us 0);
    `labelled_only` makes it an INNER JOIN. Each row adds time_us (served, microseconds
    since the epoch, as Float64), labelled, truth_label, truth_value, truth_is_label and
    label_time_us. Rows come in no particular order: a caller that needs one says so
    around this query."""
    where, params = _traffic_filter(traffic)
    newest = ""
    if traffic.last_n:
        params["last_n"] = traffic.last_n
        newest = " ORDER BY time DESC, request_id LIMIT {last_n:UInt32}"
    selected = ", ".join(["request_id", "time", *columns])
    join = "INNER" if labelled_only else "LEFT"
    sql = (
        f"WITH p AS (SELECT {selected} FROM {clickhouse.table('predictions')} FINAL "
        f"WHERE {' AND '.join(where)}{newest}) "
        "SELECT p.*, toFloat64(toUnixTimestamp64Micro(p.time)) AS time_us, "
        "l.request_id != '' AS labelled, l.label AS truth_label, l.value AS truth_value, "
        "l.truth_kind = 'label' AS truth_is_label, "
        "toFloat64(toUnixTimestamp64Micro(l.time)) AS label_time_us "
        f"FROM p {join} JOIN (SELECT request_id, time, label, value, truth_kind "
        f"FROM {clickhouse.table('labels')} FINAL "
        "WHERE request_id IN (SELECT request_id FROM p)) AS l ON p.request_id = l.request_id"
    )
    return sql, params


def _traffic_filter(traffic: Traffic) -> tuple[list[str], dict[str, Any]]:
    """The conditions on the predictions table that select `traffic`'s rows (before FINAL
    and any last-N), and their parameters."""
    params: dict[str, Any] = {"model": traffic.model}
    where = ["model = {model:String}", "role = 'live'"]
    if not traffic.failures:
        where.append("error = ''")
    if traffic.versions:
        names = []
        for index, version in enumerate(traffic.versions):
            params[f"version{index}"] = version
            names.append(f"{{version{index}:String}}")
        where.append(f"version IN ({', '.join(names)})")
    if traffic.start is not None:
        params["start"] = traffic.start
        where.append("time >= {start:DateTime64(6, 'UTC')}")
    if traffic.end is not None:
        params["end"] = traffic.end
        where.append("time < {end:DateTime64(6, 'UTC')}")
    return where, params


def window_statistics_query(
    clickhouse: ClickHouse,
    traffic: Traffic,
    numeric: Sequence[str],
    points: Sequence[npt.NDArray[np.float64]],
    categorical: Mapping[str, Sequence[str]],
    output: npt.NDArray[np.float64] | None = None,
) -> tuple[str, dict[str, Any]]:
    """The one query of a window's drift statistics against a frozen baseline, and its
    parameters: one row, whatever the window's size (`labelled_window_query`'s rows
    aggregated where they are; only the labelled rows come out one by one, for the
    performance and the root causes).

    `points[i]` are the sorted, distinct points at which numeric feature i's window is
    counted (its bin edges and reference sample); `output` those of the output (as
    stream `o`). Columns: rows, first_us and last_us (the first and last row's time in
    microseconds); per numeric stream i: size{i} its count of finite values x and, at
    each point v_k (k = 1..d), first{i}: the first position of v_k's run of equal values
    once the finite values and the points are sorted together. Then #{x < v_k} =
    first - k, ties included: the k - 1 points below v_k sort before its run. (#{x <= v}
    is #{x < v+}, v+ the next float after v: the caller adds those points.)
    Per categorical feature j: k{j} the count of each frozen category, then of any other
    value ('' is missing: not counted). The labelled rows, ordered by time then
    request_id: output_label, output_value, truth_label, truth_value, truth_is_label,
    then n0.. and c0.. as `feature_columns` reads them.

    Why a sort per stream rather than a rank per row: ClickHouse has no binary search
    of a value in an array, and a search spelled out in SQL (one lookup of a constant
    array per step) costs ~1 s of query planning for 20 streams, as the planner copies
    the 2,000-point constant at every use. The points travel as hex of little-endian
    float64: exact, and decoded once, where a 2,000-number Array parameter costs
    milliseconds of parsing per use."""
    features, params = feature_columns(numeric, list(categorical))
    streams = [(f"n{i}", str(i), p) for i, p in enumerate(points)]
    if output is not None:
        streams.append(("output_value", "o", output))
    aggregates = ["count() AS rows", "min(time_us) AS first_us", "max(time_us) AS last_us"]
    results = ["rows", "first_us", "last_us"]
    for value, key, at in streams:
        params[f"v{key}"] = np.ascontiguousarray(at, dtype="<f8").tobytes().hex()
        aggregates.append(f"groupArrayIf({value}, isFinite({value})) AS w{key}")
        results += _run_positions(key, len(at))
    for j, categories in enumerate(categorical.values()):
        params[f"k{j}"] = list(categories)
        count = len(categories)
        aggregates.append(
            f"countResample(0, {count + 1}, 1)(if(c{j} = '', -1, "
            f"if((indexOf({{k{j}:Array(String)}}, c{j}) AS _i{j}) > 0, _i{j} - 1, {count}))) "
            f"AS k{j}"
        )
        results.append(f"k{j}")
    labelled = [
        "output_label",
        "output_value",
        "truth_label",
        "truth_value",
        "truth_is_label",
        *(f"n{i}" for i in range(len(numeric))),
        *(f"c{j}" for j in range(len(categorical))),
    ]
    rows = ", ".join(["time_us", "request_id", *labelled])
    aggregates.append(f"arraySort(groupArrayIf(({rows}), labelled)) AS _labelled")
    results += [f"arrayMap(t -> t.{i + 3}, _labelled) AS l_{n}" for i, n in enumerate(labelled)]
    window, window_params = labelled_window_query(
        clickhouse, traffic, ["output_value", "output_label", *features]
    )
    params |= window_params
    names = [result.rsplit(" AS ", 1)[-1] for result in results]
    kept = [name for name in names if not name.startswith("_")]
    sql = (
        f"SELECT {', '.join(kept)} FROM (SELECT {', '.join(results)} FROM ("
        f"SELECT {', '.join(aggregates)} FROM ({window})))"
    )
    return sql, params


def _run_positions(key: str, points: int) -> list[str]:
    """The select expressions of stream `key`'s first{key} (and size{key}) from its
    finite values w{key} and its `points` sorted distinct points (hex v{key}).

    The values and points are sorted together (_m); a run of equal values starts where a
    value differs from the one before, and arrayFill carries each run's first position
    over the run. The same positions, ordered by value (_p, a sort of positions), are
    kept where they are a point's (position > size), in the points' order: the points
    are distinct."""
    merged = (
        f"arrayConcat(w{key}, arrayMap(i -> reinterpretAsFloat64(substring("
        f"unhex({{v{key}:String}}), i * 8 + 1, 8)), range({points})))"
    )
    positions = f"arrayEnumerate(_c{key})"
    starts = f"arrayMap((a, b) -> a != b, _m{key}, arrayPushFront(arrayPopBack(_m{key}), nan))"
    return [
        f"length(w{key}) AS size{key}",
        f"{merged} AS _c{key}",
        f"arraySort(_c{key}) AS _m{key}",
        f"arraySort((i, v) -> v, {positions}, _c{key}) AS _p{key}",
        f"arrayFilter((run, i) -> i > size{key}, arrayFill((p, start) -> start, {positions}, "
        f"{starts}), _p{key}) AS first{key}",
    ]


class PredictionLog:
    def __init__(self, clickhouse: ClickHouse) -> None:
        self._ch = clickhouse

    async def ping(self) -> None:
        """Raise unless the store answers (a consumer's probe: unreachable, or bad data?)."""
        await self._ch.ping()

    async def write(
        self,
        predictions: Sequence[events_pb2.PredictionEvent] = (),
        labels: Sequence[events_pb2.LabelEvent] = (),
    ) -> tuple[int, int]:
        """Insert the events (one batch per table); return the rows written per table."""
        return await self.write_tables(prediction_table(predictions), label_table(labels))

    async def write_tables(self, predictions: pa.Table, labels: pa.Table) -> tuple[int, int]:
        """Insert tables built by prediction_table and label_table."""
        written_predictions = (
            await self._ch.insert_arrow("predictions", predictions) if predictions.num_rows else 0
        )
        written_labels = await self._ch.insert_arrow("labels", labels) if labels.num_rows else 0
        return written_predictions, written_labels

    async def write_events(self, events: Iterable[Message]) -> tuple[int, int]:
        """Insert a mixed stream of prediction and label events (as a consumer batch has)."""
        return await self.write(*split_events(events))

    async def last_n(
        self, model: str, version: str, n: int, role: str = "live"
    ) -> list[dict[str, Any]]:
        """The newest `n` predictions of a model version, newest first."""
        result = await self._ch.query(
            f"SELECT {', '.join(PREDICTION_COLUMNS)} FROM {self._ch.table('predictions')} FINAL "
            "WHERE model = {model:String} AND version = {version:String} AND role = {role:String} "
            "ORDER BY time DESC, request_id LIMIT {n:UInt32}",
            {"model": model, "version": version, "role": role, "n": n},
        )
        return result.dicts()

    async def window_counts(
        self, model: str, version: str, start: dt.datetime, end: dt.datetime
    ) -> WindowCounts:
        """Predictions, labelled predictions and failed predictions in [start, end)."""
        window, params = labelled_window_query(
            self._ch,
            Traffic(model, (version,), start, end, failures=True),
            ["error != '' AS failed"],
        )
        result = await self._ch.query(
            f"SELECT count(), countIf(labelled AND NOT failed), countIf(failed) FROM ({window})",
            params,
        )
        rows, labelled, errors = result.rows[0]
        return WindowCounts(rows=int(rows), labelled=int(labelled), errors=int(errors))

    async def labelled(
        self,
        model: str,
        numeric: Sequence[str],
        categorical: Sequence[str],
        start: dt.datetime,
        end: dt.datetime,
        limit: int,
        version: str = "",
    ) -> Columns:
        """The newest `limit` live, successful predictions of `model` (of one `version`
        when given) in [start, end) that have their label, oldest first: the columns
        request_id, time, version, output_value, output_label, n0.. (numeric features,
        NaN when missing), c0.. (categories, '' when missing), then the label columns of
        `labelled_window_query`. Training data and performance windows read this: the
        features as they were logged at serving time."""
        features, feature_params = feature_columns(numeric, categorical)
        window, params = labelled_window_query(
            self._ch,
            Traffic(model, (version,) if version else (), start, end),
            ["version", "output_value", "output_label", *features],
            labelled_only=True,
        )
        sql = (
            f"SELECT * FROM ({window} ORDER BY p.time DESC, p.request_id LIMIT {{limit:UInt32}}) "
            "ORDER BY time_us, request_id"
        )
        params |= feature_params | {"limit": limit}
        return await self._ch.query_columns(sql, params)

    async def features(
        self,
        model: str,
        version: str,
        numeric: Sequence[str],
        categorical: Sequence[str],
        start: dt.datetime,
        end: dt.datetime,
    ) -> Columns:
        """A version's live, successful predictions in [start, end), labelled or not, in
        prediction-time order (as the online detectors see them): the columns request_id,
        time, n0.. (numeric features, NaN when missing), c0.. (categories, '' when
        missing), then the label columns of `labelled_window_query`. `driftloop drift
        evaluate` replays these."""
        features, feature_params = feature_columns(numeric, categorical)
        window, params = labelled_window_query(
            self._ch, Traffic(model, (version,), start, end), features
        )
        sql = f"SELECT * FROM ({window}) ORDER BY time_us, request_id"
        return await self._ch.query_columns(sql, params | feature_params)

    async def labelled_count(self, model: str, since: dt.datetime) -> int:
        """Live predictions of `model` served since `since` that have their label."""
        window, params = labelled_window_query(
            self._ch, Traffic(model, start=since), labelled_only=True
        )
        result = await self._ch.query(f"SELECT count() FROM ({window})", params)
        return int(result.scalar() or 0)
