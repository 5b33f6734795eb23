"""Online detection over the sink's batches: every live model version gets its monitor
(built from its registry baseline), labels join into the error stream, alarms become
debounced alerts and points of the drift_metrics series.

Predictions reach the detectors in prediction-time order, not in arrival order: they pass
a reordering buffer (driftloop.drift.ordering) that holds them until every partition has
moved past them, so the same stream gives the same alarms however the consumer interleaved
its partitions. Labels join on arrival (the join does not depend on order); the errors of
the predictions they complete reach the error detector in a batch sorted by prediction
time."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import TypeVar

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from driftloop.drift.alerts import Alerts
from driftloop.drift.baselines import BaselineSource
from driftloop.drift.labels import LabelJoin, Outcome, ServedRow, Truth
from driftloop.drift.online import MISSING_CODE, UNSEEN_CODE, OnlineAlarm, VersionMonitor
from driftloop.drift.ordering import PARTITION, REQUEST_ID, TIME, ReorderBuffer
from driftloop.kit.errors import DriftloopError
from driftloop.v1 import events_pb2

log = logging.getLogger(__name__)
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
# A version the registry could not describe is asked about again after this long.
RETRY_UNKNOWN_S = 30.0
# The columns of a prediction the label join keeps (then its time), in Served's order.
_SERVED = ("model", "version", "output_kind", "output_label", "output_value")
RecordAlarm = Callable[[str, str, OnlineAlarm], Awaitable[object]]
ArrowColumn = TypeVar("ArrowColumn", pa.Array, pa.ChunkedArray)


class OnlineDetection:
    """Runs the monitors of every live model version over the sink's batches, and joins
    labels into the error stream. A version the registry cannot describe is skipped (and
    asked about again after a while): detection never holds up the sink."""

    def __init__(
        self,
        baselines: BaselineSource,
        join: LabelJoin,
        alerts: Alerts,
        false_alarm_events: float,
        record_alarm: RecordAlarm,
        order: ReorderBuffer,
        assigned: Callable[[], Collection[int]] = tuple,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._baselines = baselines
        self._join = join
        self._alerts = alerts
        self._false_alarm_events = false_alarm_events
        self._record_alarm = record_alarm
        self.order = order
        # The partitions of predictions the consumer holds now (they hold the watermark).
        self._assigned = assigned
        self._clock = clock
        # A batch and the quiet-time release both feed the detectors: one at a time.
        self._lock = asyncio.Lock()
        self._monitors: dict[tuple[str, str], VersionMonitor] = {}
        self._unknown: dict[tuple[str, str], float] = {}
        # Per version: predictions its input detectors saw, labelled outcomes its error one.
        self.events: dict[tuple[str, str], int] = {}
        self.outcomes: dict[tuple[str, str], int] = {}

    async def observe(
        self,
        predictions: pa.Table,
        labels: Sequence[events_pb2.LabelEvent],
        prediction_partitions: Sequence[int],
        label_partitions: Sequence[int],
    ) -> list[events_pb2.DriftAlert]:
        """Feed a batch: `predictions` as prediction_log.prediction_table builds it, and
        the Kafka partition of each prediction row and of each label (the join's bound is
        per partition and the reordering's watermark too)."""
        async with self._lock:
            live = np.flatnonzero(
                pc.and_(
                    pc.equal(predictions.column("role"), "live"),
                    pc.equal(predictions.column("error"), ""),
                ).to_numpy(zero_copy_only=False)
            )
            column = {name: _objects(predictions.column(name)) for name in _SERVED}
            micros = predictions.column("time").cast(pa.int64()).to_numpy(zero_copy_only=False)
            outcomes: dict[tuple[str, str], list[tuple[int, str, Outcome]]] = {}

            def joined(request_id: str, outcome: Outcome | None) -> None:
                if outcome is not None:
                    key = (outcome.model, outcome.version)
                    outcomes.setdefault(key, []).append((outcome.time_us, request_id, outcome))

            # The join takes the batch at once (one dictionary update per partition).
            served: list[ServedRow] = list(
                zip(
                    *(column[name][live].tolist() for name in _SERVED),
                    micros[live].tolist(),
                    strict=True,
                )
            )
            for request_id, outcome in self._join.predictions(
                _rows(predictions.column("request_id"), live).to_pylist(),
                served,
                np.asarray(prediction_partitions, dtype=np.int64)[live].tolist(),
            ):
                joined(request_id, outcome)
            for label, partition in zip(labels, label_partitions, strict=True):
                joined(
                    label.request_id, self._join.label(label.request_id, _truth(label), partition)
                )
            self._join.expire()
            arrived = pa.table(
                {
                    TIME: pa.array(micros[live], pa.int64()),
                    REQUEST_ID: _rows(predictions.column("request_id"), live),
                    PARTITION: np.asarray(prediction_partitions, dtype=np.int32)[live],
                    "model": _rows(predictions.column("model"), live),
                    "version": _rows(predictions.column("version"), live),
                    "output_value": _rows(predictions.column("output_value"), live),
                    "numbers": _rows(predictions.column("numbers"), live),
                    "categories": _rows(predictions.column("categories"), live),
                }
            )
            released = self.order.push(arrived, self._assigned())
            # Errors in prediction-time order too (ties by request id).
            errors = {
                key: [outcome for *_, outcome in sorted(met, key=lambda m: m[:2])]
                for key, met in outcomes.items()
            }
            return await self._detect(released, errors)

    async def release_quiet(self) -> list[events_pb2.DriftAlert]:
        """Feed the detectors what the reordering buffer holds once no batch came for its
        idle time (the tail of a stream that stopped)."""
        async with self._lock:
            released = self.order.release_quiet()
            if released is None:
                return []
            return await self._detect(released, {})

    async def release_quiet_every(self, seconds: float) -> None:
        """The quiet-time release, until cancelled."""
        while True:
            await asyncio.sleep(seconds)
            try:
                await self.release_quiet()
            except Exception:
                log.exception("online detection failed on the quiet-time release")

    async def _detect(
        self, released: pa.Table, outcomes: dict[tuple[str, str], list[Outcome]]
    ) -> list[events_pb2.DriftAlert]:
        """Run the monitors over released predictions (in order) and joined outcomes."""
        micros = released.column(TIME).to_numpy(zero_copy_only=False)
        outputs = released.column("output_value").to_numpy(zero_copy_only=False)
        served_rows = _versions(released.column("model"), released.column("version"))
        numbers = released.column("numbers").combine_chunks()
        categories = released.column("categories").combine_chunks()
        raised = []
        for key in sorted(served_rows.keys() | outcomes.keys()):
            monitor = await self._monitor(*key)
            if monitor is None:
                continue
            # Each alarm with the prediction time of the event that fired it.
            timed: list[tuple[OnlineAlarm, int]] = []
            if key in served_rows:
                rows = served_rows[key]
                matrix = feature_matrix(_rows(numbers, rows), monitor.features)
                codes = category_codes(
                    _rows(categories, rows), monitor.categorical, monitor.categories
                )
                before = self.events.get(key, 0)
                for alarm in monitor.observe(matrix, outputs[rows].astype(np.float64), codes):
                    timed.append((alarm, int(micros[rows[alarm.index - before]])))
                self.events[key] = before + rows.size
            met = outcomes.get(key, [])
            before = self.outcomes.get(key, 0)
            errors = np.asarray([outcome.error for outcome in met], dtype=np.float64)
            for alarm in monitor.observe_errors(errors):
                timed.append((alarm, met[alarm.index - before].time_us))
            self.outcomes[key] = before + len(met)
            # A lasting shift re-alarms after every h of evidence: record each stream's first.
            alarms = list({a.stream: a for a, _ in reversed(timed)}.values())[::-1]
            for alarm in alarms:
                log.info(
                    "online drift alarm",
                    extra={
                        "model": key[0],
                        "version": key[1],
                        "stream": alarm.stream,
                        "event": alarm.index,
                        "change_from": alarm.start,
                    },
                )
                await self._record_alarm(key[0], key[1], alarm)
            # Every batch: the alerts take in the alarms, and close what has been quiet.
            raised += await self._alerts.from_online(
                *key,
                [(alarm, _utc(at)) for alarm, at in timed],
                self.events.get(key, 0),
                self.outcomes.get(key, 0),
            )
        return raised

    async def _monitor(self, model: str, version: str) -> VersionMonitor | None:
        monitor = self._monitors.get((model, version))
        if monitor is not None:
            return monitor
        failed = self._unknown.get((model, version))
        if failed is not None and self._clock() - failed < RETRY_UNKNOWN_S:
            return None
        try:
            info = await self._baselines.get(model, version)
        except DriftloopError as error:
            log.warning(
                "no baseline for online detection; will ask again",
                extra={"model": model, "version": version, "error": str(error)},
            )
            self._unknown[(model, version)] = self._clock()
            return None
        monitor = VersionMonitor(info.baseline, info.output_kind, self._false_alarm_events)
        self._monitors[(model, version)] = monitor
        return monitor


def _rows(column: ArrowColumn, rows: npt.NDArray[np.intp]) -> ArrowColumn:
    """The column's `rows` (ascending): the column itself when they are all of them, the
    usual case (a copy of a 50,000-row map column is not free)."""
    if rows.size == len(column):
        return column
    return column.take(rows)


def _objects(column: pa.ChunkedArray) -> npt.NDArray[np.object_]:
    """A string column as Python strings, one object per distinct value: a batch's model,
    version, kind and label repeat in every row (one string each, not one per row)."""
    encoded = pc.dictionary_encode(column.combine_chunks())
    distinct = np.asarray(encoded.dictionary.to_pylist(), dtype=object)
    return np.asarray(distinct[encoded.indices.to_numpy(zero_copy_only=False)])


def _versions(
    models: pa.ChunkedArray, versions: pa.ChunkedArray
) -> dict[tuple[str, str], IntArray]:
    """The rows of each (model, version), ascending: grouped by their dictionary codes,
    not row by row. No rows (a batch the reordering buffer holds back), no group."""
    if len(models) == 0:
        return {}
    model = pc.dictionary_encode(models.combine_chunks())
    version = pc.dictionary_encode(versions.combine_chunks())
    code = model.indices.to_numpy(zero_copy_only=False).astype(np.int64) * len(
        version.dictionary
    ) + version.indices.to_numpy(zero_copy_only=False)
    order = np.argsort(code, kind="stable")
    starts = np.flatnonzero(np.diff(code[order], prepend=-1))
    names, numbers = model.dictionary.to_pylist(), version.dictionary.to_pylist()
    groups: dict[tuple[str, str], IntArray] = {}
    for first, end in zip(starts.tolist(), [*starts[1:].tolist(), order.size], strict=True):
        m, v = divmod(int(code[order[first]]), len(numbers))
        groups[(names[m], numbers[v])] = order[first:end]
    return groups


def _utc(micros: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=micros)


def _truth(event: events_pb2.LabelEvent) -> Truth:
    is_label = event.WhichOneof("truth") == "label"
    return Truth(event.label, event.value, is_label)


def feature_matrix(numbers: pa.MapArray, names: Sequence[str]) -> FloatArray:
    """Rows x named features from a Map(String, Float64) column (NaN where absent):
    vectorised over the flattened keys, no Python per value."""
    matrix = np.full((len(numbers), len(names)), np.nan)
    if not names or len(numbers) == 0:
        return matrix
    layout = _same_keys(numbers)
    if layout is not None:
        keys, values = layout
        wanted = {name: column for column, name in enumerate(names)}
        pairs = [(i, wanted[key]) for i, key in enumerate(keys) if key in wanted]
        if pairs:
            taken, placed = (list(side) for side in zip(*pairs, strict=True))
            matrix[:, placed] = values[:, taken]
        return matrix
    rows, where, values = _named_entries(numbers, names)
    matrix[rows, where] = values.to_numpy(zero_copy_only=False)
    return matrix


def _same_keys(entries: pa.MapArray) -> tuple[list[str], FloatArray] | None:
    """When every row of a Map(String, Float64) column holds the same distinct keys in
    the same order (the sink's usual batch: one encoder, one feature order), those keys
    and the values as a rows x keys matrix, read at fixed places; None otherwise. The
    check is on the keys' bytes: the same lengths and bytes repeating row after row, a
    few array operations instead of a lookup of every key by name."""
    offsets = entries.offsets.to_numpy()
    counts = np.diff(offsets)
    width = int(counts[0])
    if width == 0 or (counts != width).any():
        return None
    first, last = int(offsets[0]), int(offsets[-1])
    keys = entries.keys.slice(first, last - first)
    names = keys.slice(0, width).to_pylist()
    if len(set(names)) < width:
        return None
    if keys.type != pa.string():
        return None
    at = keys.offset
    ends = np.frombuffer(keys.buffers()[1], dtype=np.int32)[at : at + len(keys) + 1]
    lengths = np.diff(ends).reshape(-1, width)
    if (lengths != lengths[0]).any():
        return None
    data = np.frombuffer(keys.buffers()[2], dtype=np.uint8)[int(ends[0]) : int(ends[-1])]
    text = data.reshape(len(entries), -1)
    if (text != text[0]).any():
        return None
    values = entries.items.slice(first, last - first).to_numpy(zero_copy_only=False)
    return names, values.reshape(-1, width)


def category_codes(
    categories: pa.MapArray, names: Sequence[str], vocabularies: Sequence[Sequence[str]]
) -> IntArray:
    """Rows x named categorical features from a Map(String, String) column: each value's
    index in its feature's baseline categories, UNSEEN_CODE for a value not among them,
    MISSING_CODE where the feature is absent (driftloop.drift.online's codes)."""
    codes = np.full((len(categories), len(names)), MISSING_CODE, dtype=np.int64)
    if not names or len(categories) == 0:
        return codes
    rows, where, values = _named_entries(categories, names)
    for column, vocabulary in enumerate(vocabularies):
        mine = where == column
        index = pc.index_in(values.filter(pa.array(mine)), pa.array(list(vocabulary), pa.string()))
        known = pc.fill_null(index, UNSEEN_CODE).to_numpy(zero_copy_only=False)
        codes[rows[mine], column] = known
    return codes


def _named_entries(
    entries: pa.MapArray, names: Sequence[str]
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], pa.Array]:
    """The entries of a Map column whose key is one of `names`: their row, the name's
    position, and their values, vectorised over the flattened keys."""
    offsets = entries.offsets.to_numpy()
    first, last = int(offsets[0]), int(offsets[-1])
    rows = np.repeat(np.arange(len(entries)), np.diff(offsets))
    keys = entries.keys.slice(first, last - first)
    values = entries.items.slice(first, last - first)
    columns = pc.index_in(keys, value_set=pa.array(list(names), pa.string()))
    present = columns.is_valid().to_numpy(zero_copy_only=False)
    where = columns.to_numpy(zero_copy_only=False)[present].astype(np.intp)
    return rows[present], where, values.filter(pa.array(present))
