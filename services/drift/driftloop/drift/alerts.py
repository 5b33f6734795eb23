"""Debounced drift alerts from windowed reports and online alarms.

At most one alert per (model, version, kind) per debounce period; an alert carries the
top contributing streams with their scores, a severity and a one-line summary. Where it
goes (the drift-alerts topic and ClickHouse) is the publisher's business.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence

from driftloop.drift.online import OnlineAlarm
from driftloop.drift.report import Report, StreamResult
from driftloop.v1 import common_pb2, events_pb2

Publish = Callable[[events_pb2.DriftAlert], Awaitable[None]]
TOP_FEATURES = 5
_KINDS = {
    "data": events_pb2.DRIFT_KIND_DATA,
    "prediction": events_pb2.DRIFT_KIND_PREDICTION,
    "concept": events_pb2.DRIFT_KIND_CONCEPT,
}
# The names the drift_alerts table and the metrics use.
KIND_NAMES: dict[events_pb2.DriftKind.ValueType, str] = {v: k for k, v in _KINDS.items()}
SEVERITY_NAMES: dict[events_pb2.Severity.ValueType, str] = {
    events_pb2.SEVERITY_INFO: "info",
    events_pb2.SEVERITY_WARNING: "warning",
    events_pb2.SEVERITY_CRITICAL: "critical",
}


class Alerts:
    def __init__(
        self, publish: Publish, debounce_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._publish = publish
        self._debounce = debounce_s
        self._clock = clock
        self._last: dict[tuple[str, str, str], float] = {}
        self.suppressed = 0

    async def from_report(self, report: Report) -> list[events_pb2.DriftAlert]:
        """Alerts for each kind of drift the report found."""
        candidates: list[tuple[str, events_pb2.Severity.ValueType, list[StreamResult], str]] = []
        if report.data_drift:
            drifted = report.drifted_features
            names = ", ".join(f.stream for f in drifted[:TOP_FEATURES])
            candidates.append(
                (
                    "data",
                    events_pb2.SEVERITY_CRITICAL if report.major else events_pb2.SEVERITY_WARNING,
                    drifted,
                    f"{len(drifted)} of {len(report.features)} features drifted ({names})",
                )
            )
        if report.prediction_drift and report.prediction is not None:
            candidates.append(
                (
                    "prediction",
                    events_pb2.SEVERITY_WARNING,
                    [report.prediction],
                    f"output distribution drifted (PSI {report.prediction.psi:.3f})",
                )
            )
        if report.concept_drift:
            performance = ", ".join(f"{k} {v:.4g}" for k, v in report.performance.items())
            causes = [c.feature for c in report.root_causes[:TOP_FEATURES]]
            by_name = {f.stream: f for f in report.features}
            candidates.append(
                (
                    "concept",
                    events_pb2.SEVERITY_CRITICAL,
                    [by_name[name] for name in causes if name in by_name],
                    f"performance below the holdout on {report.labelled} labelled rows "
                    f"({performance})",
                )
            )
        raised = []
        for kind, severity, streams, summary in candidates:
            if not self._due(report.model, report.version, kind):
                continue
            alert = _alert(kind, report.model, report.version, severity, summary)
            alert.window.start.FromDatetime(report.start)
            alert.window.end.FromDatetime(report.end)
            alert.window_rows = report.rows
            alert.features.extend(
                events_pb2.FeatureScore(
                    feature=s.stream, test="psi", score=s.psi, p_value=s.p_value, drifted=s.drifted
                )
                for s in streams[:TOP_FEATURES]
            )
            await self._publish(alert)
            raised.append(alert)
        return raised

    async def from_online(
        self, model: str, version: str, alarms: Sequence[OnlineAlarm], events: int
    ) -> list[events_pb2.DriftAlert]:
        """One alert per kind among the alarms (strongest streams first)."""
        raised = []
        for kind in ("data", "prediction", "concept"):
            fired = sorted((a for a in alarms if a.kind == kind), key=lambda a: -a.statistic)
            if not fired or not self._due(model, version, kind):
                continue
            names = ", ".join(a.stream for a in fired[:TOP_FEATURES])
            alert = _alert(
                kind,
                model,
                version,
                events_pb2.SEVERITY_WARNING,
                f"online detector (CUSUM) alarm on {names}, change from event "
                f"{min(a.start for a in fired)} detected at event {max(a.index for a in fired)}",
            )
            alert.window_rows = events
            # An online alarm is a point in time: the window is that instant.
            alert.window.start.CopyFrom(alert.time)
            alert.window.end.CopyFrom(alert.time)
            alert.features.extend(
                events_pb2.FeatureScore(
                    feature=a.stream, test="cusum", score=a.statistic, drifted=True
                )
                for a in fired[:TOP_FEATURES]
            )
            await self._publish(alert)
            raised.append(alert)
        return raised

    def _due(self, model: str, version: str, kind: str) -> bool:
        now = self._clock()
        last = self._last.get((model, version, kind))
        if last is not None and now - last < self._debounce:
            self.suppressed += 1
            return False
        self._last[(model, version, kind)] = now
        return True


def _alert(
    kind: str, model: str, version: str, severity: events_pb2.Severity.ValueType, summary: str
) -> events_pb2.DriftAlert:
    alert = events_pb2.DriftAlert(
        alert_id=uuid.uuid4().hex,
        kind=_KINDS[kind],
        model=model,
        version=version,
        severity=severity,
        summary=summary,
        window=common_pb2.TimeWindow(),
    )
    alert.time.FromDatetime(dt.datetime.now(dt.UTC))
    return alert
