"""The drift service's ClickHouse tables: the drift_metrics time series and drift_alerts
(one row per event of an alert)."""

from __future__ import annotations

import base64
import datetime as dt
import math
from typing import Any

from driftloop.clickhouse.client import ClickHouse
from driftloop.drift.alerts import KIND_NAMES, SEVERITY_NAMES, STATE_NAMES
from driftloop.drift.report import Report
from driftloop.v1 import events_pb2

METRIC_COLUMNS = (
    "model",
    "version",
    "window_kind",
    "window_start",
    "window_end",
    "stream",
    "test",
    "value",
    "p_value",
    "drifted",
    "rows",
    "computed",
)
ALERT_COLUMNS = (
    "alert_id",
    "time",
    "model",
    "version",
    "kind",
    "severity",
    "window_start",
    "window_end",
    "window_rows",
    "features",
    "scores",
    "summary",
    "record",
    "state",
    "revision",
    "opened",
    "first_alarms",
)


def metric_rows(report: Report, computed: dt.datetime) -> list[tuple[Any, ...]]:
    """The report as drift_metrics rows: every test of every stream, each feature's link
    to the performance drop (test "link", with labels), the performance metrics (stream
    __performance__) and the drifted share (stream __dataset__)."""
    head = (report.model, report.version, report.window_kind, report.start, report.end)
    rows = []
    streams = [*report.features, *([report.prediction] if report.prediction else [])]
    for stream in streams:
        for score in stream.scores():
            rows.append(
                (
                    *head,
                    score.stream,
                    score.test,
                    _finite(score.value),
                    _finite(score.p_value),
                    int(score.drifted),
                    report.rows,
                    computed,
                )
            )
    for name, value in report.performance.items():
        rows.append(
            (
                *head,
                "__performance__",
                name,
                _finite(value),
                math.nan,
                int(report.concept_drift),
                report.labelled,
                computed,
            )
        )
    rows.append(
        (
            *head,
            "__dataset__",
            "drifted_share",
            report.drifted_share,
            math.nan,
            int(report.data_drift),
            report.rows,
            computed,
        )
    )
    return rows


def _finite(value: float) -> float:
    return value if math.isfinite(value) else math.nan


class DriftStore:
    def __init__(self, clickhouse: ClickHouse) -> None:
        self._ch = clickhouse

    async def write_report(self, report: Report, computed: dt.datetime) -> int:
        return await self._ch.insert("drift_metrics", METRIC_COLUMNS, metric_rows(report, computed))

    async def write_online(
        self, model: str, version: str, stream: str, statistic: float, at: dt.datetime
    ) -> int:
        """An online detector's alarm, as a point of the time series (window_kind online)."""
        row = (model, version, "online", at, at, stream, "cusum", statistic, math.nan, 1, 0, at)
        return await self._ch.insert("drift_metrics", METRIC_COLUMNS, [row])

    async def write_alert(self, alert: events_pb2.DriftAlert) -> int:
        row = (
            alert.alert_id,
            alert.time.ToDatetime(dt.UTC),
            alert.model,
            alert.version,
            KIND_NAMES.get(alert.kind, "unspecified"),
            SEVERITY_NAMES.get(alert.severity, "unspecified"),
            alert.window.start.ToDatetime(dt.UTC),
            alert.window.end.ToDatetime(dt.UTC),
            alert.window_rows,
            [f.feature for f in alert.features],
            [f.score for f in alert.features],
            alert.summary,
            base64.b64encode(alert.SerializeToString()).decode("ascii"),
            STATE_NAMES.get(alert.state, "open"),
            alert.revision,
            (alert.opened if alert.HasField("opened") else alert.time).ToDatetime(dt.UTC),
            [f.first_alarm.ToDatetime(dt.UTC) for f in alert.features],
        )
        return await self._ch.insert("drift_alerts", ALERT_COLUMNS, [row])

    async def alerts(
        self,
        model: str,
        start: dt.datetime | None,
        end: dt.datetime | None,
        limit: int,
    ) -> list[events_pb2.DriftAlert]:
        """The alerts of a model with an event in the period, each as its latest event there
        (an open, updated or closed alert), the most recently changed first."""
        where = "model = {model:String}"
        params: dict[str, Any] = {"model": model, "limit": limit}
        if start is not None:
            where += " AND time >= {start:DateTime64(6, 'UTC')}"
            params["start"] = start
        if end is not None:
            where += " AND time < {end:DateTime64(6, 'UTC')}"
            params["end"] = end
        result = await self._ch.query(
            "SELECT argMax(record, (revision, time)) FROM "
            f"{self._ch.table('drift_alerts')} FINAL WHERE {where} "
            "GROUP BY alert_id ORDER BY max(time) DESC, alert_id LIMIT {limit:UInt32}",
            params,
        )
        return [
            events_pb2.DriftAlert.FromString(base64.b64decode(record)) for (record,) in result.rows
        ]

    async def open_alerts(self) -> list[events_pb2.DriftAlert]:
        """Every alert whose latest event is not its close, as that event (what a restarted
        drift service takes up again), the oldest opened first."""
        result = await self._ch.query(
            "SELECT argMax(record, (revision, time)) FROM "
            f"{self._ch.table('drift_alerts')} FINAL GROUP BY alert_id "
            "HAVING argMax(state, (revision, time)) != 'closed' "
            "ORDER BY min(opened), alert_id"
        )
        return [
            events_pb2.DriftAlert.FromString(base64.b64decode(record)) for (record,) in result.rows
        ]

    async def active_versions(self, since: dt.datetime) -> list[tuple[str, str]]:
        """The (model, version) pairs that served live traffic since then."""
        result = await self._ch.query(
            f"SELECT DISTINCT model, version FROM {self._ch.table('predictions')} "
            "WHERE role = 'live' AND time >= {since:DateTime64(6, 'UTC')} ORDER BY model, version",
            {"since": since},
        )
        return [(str(model), str(version)) for model, version in result.rows]
