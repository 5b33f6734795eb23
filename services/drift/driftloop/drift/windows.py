"""Reading a window of one model version's traffic out of ClickHouse, as numpy columns.

A window is the last N live predictions of a version, or a fixed time window. ClickHouse
selects and de-duplicates the rows (FINAL) and joins their labels (the prediction log's
labelled-window query, driftloop.clickhouse.prediction_log); the statistics then
run on the columns in numpy (driftloop.stats), against the version's frozen baseline.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from driftloop.clickhouse.client import ClickHouse
from driftloop.clickhouse.prediction_log import Traffic, feature_columns, labelled_window_query
from driftloop.kit.errors import InvalidArgument

FloatArray = npt.NDArray[np.float64]
TextArray = npt.NDArray[np.object_]
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


class WindowReader:
    def __init__(self, clickhouse: ClickHouse) -> None:
        self._ch = clickhouse

    async def read(
        self,
        model: str,
        version: str,
        window: Window,
        numeric: list[str],
        categorical: list[str],
    ) -> WindowData:
        features, feature_params = feature_columns(numeric, categorical)
        traffic = (
            Traffic(model, (version,), last_n=window.last_n)
            if window.last_n
            else Traffic(model, (version,), window.start, window.end)
        )
        sql, params = labelled_window_query(
            self._ch, traffic, ["output_value", "output_label", *features]
        )
        params |= feature_params
        data = await self._ch.query_columns(sql, params)
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


def _floats(values: npt.NDArray[Any]) -> FloatArray:
    return np.asarray(values, dtype=np.float64)


def _span(times_us: FloatArray) -> tuple[dt.datetime, dt.datetime]:
    """The window of the rows read: first row to just after the last (empty: now, now)."""
    if times_us.size == 0:
        now = dt.datetime.now(dt.UTC)
        return now, now
    first = dt.datetime.fromtimestamp(float(times_us.min()) / 1e6, tz=dt.UTC)
    last = dt.datetime.fromtimestamp(float(times_us.max()) / 1e6, tz=dt.UTC)
    return first, last + dt.timedelta(microseconds=1)
