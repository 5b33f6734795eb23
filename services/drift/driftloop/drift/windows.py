"""A window of one model version's traffic: its columns, or its counts against the
version's frozen baseline.

A window is the last N live predictions of a version, or a fixed time window. ClickHouse
selects and de-duplicates the rows (FINAL) and joins their labels (the prediction log's
labelled-window query, driftloop.clickhouse.prediction_log). A drift report needs only
counts of the window (`WindowStats`): per numeric stream, its finite values per frozen
bin and below / at or below each reference sample point; per category, its values per
frozen category; and the labelled rows. `WindowReader.statistics` has ClickHouse compute
them where the rows are (one query, a row of arrays back, whatever the window's size);
`summarize` computes the same counts from columns in memory (`WindowReader.read`).
`WindowReader.counts`, what the drift service uses, takes the first with a ClickHouse
server and the second with the embedded engine (see its docstring for why).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from driftloop.clickhouse.backend import Columns, numpy_columns
from driftloop.clickhouse.client import ClickHouse
from driftloop.clickhouse.prediction_log import (
    Traffic,
    feature_columns,
    labelled_window_query,
    newest_keys_query,
    number_values_columns,
    window_statistics_query,
)
from driftloop.kit.errors import InvalidArgument
from driftloop.models.baseline import Baseline, NumericBaseline
from driftloop.stats import category_counts

FloatArray = npt.NDArray[np.float64]
TextArray = npt.NDArray[np.object_]
Counts = npt.NDArray[np.int64]
# Threads that count a window's numeric streams at once (`summarize`).
COUNTING_THREADS = 2
# More rows than this in one window is a request for a different tool (memory bound).
MAX_WINDOW_ROWS = 5_000_000


@dataclass(frozen=True)
class Window:
    """Which rows: `last_n` newest, or those with start <= time < end (`last_n` = 0)."""

    last_n: int = 0
    start: dt.datetime | None = None
    end: dt.datetime | None = None

    def __post_init__(self) -> None:
        if self.last_n:
            if not 0 < self.last_n <= MAX_WINDOW_ROWS:
                raise InvalidArgument("window.last_n", f"must be in 1..{MAX_WINDOW_ROWS}")
        elif self.start is None or self.end is None:
            raise InvalidArgument("window", "give last_n or a time window with start and end")
        elif self.start >= self.end:
            raise InvalidArgument("window.time_window", "start must be before end")

    @property
    def kind(self) -> str:
        return "last_n" if self.last_n else "time"


@dataclass(frozen=True)
class WindowData:
    """The columns of a window. NaN marks a missing number; '' a missing category."""

    start: dt.datetime
    end: dt.datetime
    numbers: dict[str, FloatArray]
    categories: dict[str, TextArray]
    output_value: FloatArray
    output_label: TextArray
    labelled: npt.NDArray[np.bool_]
    truth_label: TextArray
    truth_value: FloatArray
    truth_is_label: npt.NDArray[np.bool_]

    @property
    def rows(self) -> int:
        return int(self.output_value.size)


@dataclass(frozen=True)
class StreamCounts:
    """A numeric stream's finite window values counted against its frozen baseline: per
    bin (right-closed, driftloop.stats.bin_counts), and below / at or below each point of
    the reference sample (driftloop.stats.ks_counts: the exact KS statistic's input)."""

    bins: Counts
    below: Counts
    at_or_below: Counts

    @property
    def size(self) -> int:
        return int(self.bins.sum())


@dataclass(frozen=True)
class LabelledRows:
    """The window's rows that have their label, ordered by time then request_id: what
    performance and root causes need (NaN marks a missing number, '' a missing category)."""

    output_label: TextArray
    output_value: FloatArray
    truth_label: TextArray
    truth_value: FloatArray
    truth_is_label: npt.NDArray[np.bool_]
    numbers: dict[str, FloatArray]
    categories: dict[str, TextArray]


@dataclass(frozen=True)
class WindowStats:
    """All a drift report reads of a window: counts of the baseline's streams (numbers with
    a reference sample; categories: each frozen category, then the unseen) and the
    labelled rows."""

    start: dt.datetime
    end: dt.datetime
    rows: int
    numbers: dict[str, StreamCounts]
    categories: dict[str, Counts]
    output: StreamCounts | None
    labelled: LabelledRows


def summarize(baseline: Baseline, data: WindowData) -> WindowStats:
    """The window's counts against the baseline, from its columns in memory.

    The numeric streams are counted on up to `COUNTING_THREADS` threads: their cost is
    numpy's sort, which lets go of the GIL, so a report over many features takes about
    half the time on two cores for the same CPU (100k rows x 21 streams: 104 -> 59 ms,
    107 ms of CPU either way)."""
    mask = data.labelled
    streams = [
        (item, data.numbers[item.feature])
        for item in baseline.numeric
        if item.sample and item.feature in data.numbers
    ]
    output = baseline.output
    if output and output.sample:
        streams.append((output, data.output_value))
    with ThreadPoolExecutor(min(COUNTING_THREADS, len(streams) or 1)) as pool:
        counted = list(pool.map(lambda stream: _stream_counts(*stream), streams))
    output_counts = counted.pop() if output and output.sample else None
    numbers = {item.feature: counts for (item, _), counts in zip(streams, counted, strict=False)}
    categories = {
        item.feature: category_counts(
            data.categories[item.feature][data.categories[item.feature] != ""].tolist(),
            item.categories,
        )
        for item in baseline.categorical
        if item.feature in data.categories
    }
    return WindowStats(
        start=data.start,
        end=data.end,
        rows=data.rows,
        numbers=numbers,
        categories=categories,
        output=output_counts,
        labelled=LabelledRows(
            output_label=data.output_label[mask],
            output_value=data.output_value[mask],
            truth_label=data.truth_label[mask],
            truth_value=data.truth_value[mask],
            truth_is_label=data.truth_is_label[mask],
            numbers={name: data.numbers[name][mask] for name in numbers},
            categories={name: data.categories[name][mask] for name in categories},
        ),
    )


def _stream_counts(item: NumericBaseline, values: FloatArray) -> StreamCounts:
    """A stream's counts from its values in memory, with one sort: #{x < s} and #{x <= s}
    at each sample point s are the positions of s's run in the sorted finite values, and
    a bin's count is the difference of two "at or below" counts at its edges (bins are
    right-closed, as `bin_counts` counts them). The same numbers as `bin_counts` and
    `ks_counts` (tests/unit/test_windows.py), for one sort and a few thousand binary
    searches where those sort once and search each value among the edges once more."""
    ordered = np.sort(values[np.isfinite(values)])
    sample = np.asarray(item.sample, dtype=np.float64)
    edges = np.asarray(item.edges, dtype=np.float64)
    at_edges = np.searchsorted(ordered, edges, side="right")
    return StreamCounts(
        bins=np.diff(np.concatenate([[0], at_edges, [ordered.size]])).astype(np.int64),
        below=np.searchsorted(ordered, sample, side="left").astype(np.int64),
        at_or_below=np.searchsorted(ordered, sample, side="right").astype(np.int64),
    )


def _counts_at(item: NumericBaseline, first: Any, size: int) -> StreamCounts:
    """A stream's counts from `window_statistics_query`'s run positions at its points:
    #{x < v_k} = first_k - k at the k-th point. The points are the sample, and the next
    float after each sample point and edge: #{x <= s} = #{x < s+}, as no float lies
    between s and s+; a bin's count is the difference of two "at or below" counts."""
    points = _points(item)
    k = np.arange(1, points.size + 1, dtype=np.int64)
    below = np.asarray(first, dtype=np.int64) - k
    sample = np.asarray(item.sample, dtype=np.float64)
    edges = np.asarray(item.edges, dtype=np.float64)
    at_edges = below[np.searchsorted(points, _after(edges))]
    return StreamCounts(
        bins=np.diff(np.concatenate([[0], at_edges, [size]])).astype(np.int64),
        below=below[np.searchsorted(points, sample)],
        at_or_below=below[np.searchsorted(points, _after(sample))],
    )


def _points(item: NumericBaseline) -> FloatArray:
    sample = np.asarray(item.sample, dtype=np.float64)
    edges = np.asarray(item.edges, dtype=np.float64)
    return np.unique(np.concatenate([sample, _after(sample), _after(edges)]))


def _after(values: FloatArray) -> FloatArray:
    """The next float after each value."""
    return np.nextafter(values, np.inf)


class WindowReader:
    def __init__(self, clickhouse: ClickHouse) -> None:
        self._ch = clickhouse

    async def counts(
        self, model: str, version: str, window: Window, baseline: Baseline
    ) -> WindowStats:
        """The window's counts against `baseline`, the same numbers either way
        (tests/integration/test_window_statistics.py).

        With a ClickHouse server they are counted there (`statistics`): one row of counts
        comes back whatever the window's size, and the server spends the CPU. With the
        embedded engine, which runs in this process anyway, the rows are read out and
        counted with numpy (`read`, `summarize`), which costs this process less: the
        counting query has a fixed cost of about 0.1 s (ClickHouse's analysis of a query
        carrying every stream's frozen points) and ClickHouse sorts a stream where numpy
        looks each value up (`make bench-scaling`: a round of 5,000-row windows cost about
        60 ms per version read out against 170 ms counted by chDB; `make
        bench-drift-window`: about even at 100k rows)."""
        if not self._ch.embedded:
            return await self.statistics(model, version, window, baseline)
        numeric = [item.feature for item in baseline.numeric]
        categorical = [item.feature for item in baseline.categorical]
        data = await self.read(model, version, window, numeric, categorical)
        return await asyncio.to_thread(summarize, baseline, data)

    async def statistics(
        self, model: str, version: str, window: Window, baseline: Baseline
    ) -> WindowStats:
        """The window's counts against `baseline`, computed by ClickHouse in one query
        (`window_statistics_query`): the same numbers as `summarize` of `read`."""
        numeric = [item for item in baseline.numeric if item.sample]
        output = baseline.output if baseline.output and baseline.output.sample else None
        categorical = {item.feature: item.categories for item in baseline.categorical}
        sql, params = window_statistics_query(
            self._ch,
            _traffic(model, version, window),
            [item.feature for item in numeric],
            [_points(item) for item in numeric],
            categorical,
            None if output is None else _points(output),
        )
        data = {
            name: column[0] for name, column in (await self._ch.query_columns(sql, params)).items()
        }
        rows = int(data["rows"])
        if window.last_n:
            times = [data["first_us"], data["last_us"]] if rows else []
            start, end = _span(np.asarray(times, dtype=np.float64))
        else:
            assert window.start is not None and window.end is not None
            start, end = window.start, window.end

        def stream(item: NumericBaseline, key: str) -> StreamCounts:
            return _counts_at(item, data[f"first{key}"], int(data[f"size{key}"]))

        return WindowStats(
            start=start,
            end=end,
            rows=rows,
            numbers={item.feature: stream(item, str(i)) for i, item in enumerate(numeric)},
            categories={
                name: np.asarray(data[f"k{j}"], dtype=np.int64)
                for j, name in enumerate(categorical)
            },
            output=None if output is None else stream(output, "o"),
            labelled=LabelledRows(
                output_label=_texts(data["l_output_label"]),
                output_value=_floats(data["l_output_value"]),
                truth_label=_texts(data["l_truth_label"]),
                truth_value=_floats(data["l_truth_value"]),
                truth_is_label=np.asarray(data["l_truth_is_label"], dtype=bool),
                numbers={item.feature: _floats(data[f"l_n{i}"]) for i, item in enumerate(numeric)},
                categories={name: _texts(data[f"l_c{j}"]) for j, name in enumerate(categorical)},
            ),
        )

    async def read(
        self,
        model: str,
        version: str,
        window: Window,
        numeric: list[str],
        categorical: list[str],
    ) -> WindowData:
        traffic = _traffic(model, version, window)
        data = await self._read_in_one_order(traffic, numeric, categorical)
        if data is None:
            data = await self._read_by_name(traffic, numeric, categorical)
        times = data["time_us"]
        if window.last_n:
            start, end = _span(times)
        else:
            assert window.start is not None and window.end is not None
            start, end = window.start, window.end
        return WindowData(
            start=start,
            end=end,
            numbers={name: _floats(data[f"n{i}"]) for i, name in enumerate(numeric)},
            categories={name: data[f"c{i}"].astype(object) for i, name in enumerate(categorical)},
            output_value=_floats(data["output_value"]),
            output_label=data["output_label"].astype(object),
            labelled=data["labelled"].astype(bool),
            truth_label=data["truth_label"].astype(object),
            truth_value=_floats(data["truth_value"]),
            truth_is_label=data["truth_is_label"].astype(bool),
        )

    async def _read_by_name(
        self, traffic: Traffic, numeric: list[str], categorical: list[str]
    ) -> Columns:
        """The window's columns, each numeric feature looked up by name in every row."""
        features, feature_params = feature_columns(numeric, categorical)
        sql, params = labelled_window_query(
            self._ch, traffic, ["output_value", "output_label", *features]
        )
        return await self._ch.query_columns(sql, params | feature_params)

    async def _read_in_one_order(
        self, traffic: Traffic, numeric: list[str], categorical: list[str]
    ) -> Columns | None:
        """The same columns as `_read_by_name`, when every row's numbers map holds the
        same names in the same order as the newest row's (as one client's rows do):
        then the maps' values come out as one flat array, a matrix of rows x names, and
        no feature is looked up by name (`number_values_columns`). None when some row
        differs (another order, a missing or extra feature) or there are no rows: the
        caller reads by name, which gives the same numbers."""
        sql, params = newest_keys_query(self._ch, traffic)
        keys = (await self._ch.query(sql, params)).scalar()
        if not numeric or not keys:
            return None
        values, values_params = number_values_columns(keys)
        categories, category_params = feature_columns([], categorical)
        sql, params = labelled_window_query(
            self._ch, traffic, ["output_value", "output_label", *values, *categories]
        )
        table = await self._ch.query_arrow(sql, params | values_params | category_params)
        if not table.column("same_keys").to_numpy().all():
            return None
        flat = table.column("number_values").combine_chunks().flatten()
        matrix = np.asarray(flat.to_numpy(), dtype=np.float64).reshape(table.num_rows, len(keys))
        data = numpy_columns(table.drop_columns(["same_keys", "number_values"]))
        position = {name: index for index, name in enumerate(keys)}
        for index, name in enumerate(numeric):
            at = position.get(name)
            data[f"n{index}"] = (
                np.full(table.num_rows, np.nan) if at is None else matrix[:, at].copy()
            )
        return data


def _traffic(model: str, version: str, window: Window) -> Traffic:
    if window.last_n:
        return Traffic(model, (version,), last_n=window.last_n)
    return Traffic(model, (version,), window.start, window.end)


def _floats(values: npt.NDArray[Any]) -> FloatArray:
    return np.asarray(values, dtype=np.float64)


def _texts(values: npt.NDArray[Any]) -> TextArray:
    return np.asarray(values, dtype=object)


def _span(times_us: FloatArray) -> tuple[dt.datetime, dt.datetime]:
    """The window of the rows read: first row to just after the last (empty: now, now)."""
    if times_us.size == 0:
        now = dt.datetime.now(dt.UTC)
        return now, now
    first = dt.datetime.fromtimestamp(float(times_us.min()) / 1e6, tz=dt.UTC)
    last = dt.datetime.fromtimestamp(float(times_us.max()) / 1e6, tz=dt.UTC)
    return first, last + dt.timedelta(microseconds=1)
