"""Drift alerts with a life: opened, updated, closed; from windowed reports and online alarms.

One alert per (model, version, kind) is open at a time. The first alarm of a kind opens
it (revision 0, a new alert id). While it is open, a later alarm of that kind never
opens a second alert and is never swallowed: a stream not yet in the alert is appended
(with its score and the time of its first alarm), a stronger severity raises the
alert's, and either publishes an UPDATED event of the same alert id (revision + 1). An
alarm on a stream already in the alert only refreshes that stream's last alarm: it is no
news, so nothing is published (a lasting shift re-alarms after every h of evidence).

The alert closes (a CLOSED event, its last) when every stream is back in control and the
last alarm is at least the debounce period old (so a stream wavering at its threshold
keeps one alert open instead of opening one after another):
- a stream an online detector alarmed on is in control once its detector has seen
  `quiet_events` events of its stream (predictions; labelled outcomes for the error
  stream) without alarming again: a CUSUM restarts after an alarm, so a shift that
  persists alarms again within a few hundred events, and this many quiet ones say it has
  gone (or fallen below what the detector sees);
- a stream a windowed report flagged is in control once the version's last-N report no
  longer flags it (a fixed time window is older evidence: it may flag, not clear).

Times: an alarm's time is the time of its evidence (the prediction time of the event at
which the detector fired, the end of the reported window), so the same stream gives the
same alert times however late it is processed; an event's own `time` is when it was
raised. Where an event goes (the drift-alerts topic, ClickHouse) is the publisher's
business; a failed publish changes no state (the next alarm tries again).
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field

from driftloop.drift.online import ERROR, OnlineAlarm
from driftloop.drift.report import Report, StreamResult
from driftloop.v1 import common_pb2, events_pb2

Publish = Callable[[events_pb2.DriftAlert], Awaitable[None]]
# Streams a summary names (the alert itself carries every stream).
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
STATE_NAMES: dict[events_pb2.AlertState.ValueType, str] = {
    events_pb2.ALERT_STATE_UNSPECIFIED: "open",
    events_pb2.ALERT_STATE_OPEN: "open",
    events_pb2.ALERT_STATE_UPDATED: "updated",
    events_pb2.ALERT_STATE_CLOSED: "closed",
}
Key = tuple[str, str, str]  # model, version, kind


@dataclass(frozen=True)
class Evidence:
    """One stream's alarm, as an alert takes it in."""

    stream: str
    test: str
    score: float
    time: dt.datetime
    p_value: float = float("nan")
    # Online: its detector's event count at the alarm. None: a report's.
    event: int | None = None


@dataclass
class _Stream:
    first: Evidence
    last: Evidence
    # The online detector's count at its last alarm (None: never alarmed online).
    event: int | None = None
    # The last report that had a say flagged it.
    flagged: bool = False


@dataclass
class _Open:
    alert_id: str
    opened: dt.datetime
    severity: events_pb2.Severity.ValueType
    revision: int = 0
    streams: dict[str, _Stream] = field(default_factory=dict)
    window: tuple[dt.datetime, dt.datetime] | None = None
    rows: int = 0
    last_alarm: float = 0.0  # the clock's reading


@dataclass(frozen=True)
class _Candidate:
    kind: str
    evidence: list[Evidence]
    # The severity the evidence is worth; None: it may update an open alert, not open one.
    severity: events_pb2.Severity.ValueType | None
    summary: str
    window: tuple[dt.datetime, dt.datetime] | None
    rows: int


class Alerts:
    def __init__(
        self,
        publish: Publish,
        debounce_s: float,
        quiet_events: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self._publish = publish
        self._debounce = debounce_s
        self._quiet = quiet_events
        self._clock = clock
        self._now = now
        self._open: dict[Key, _Open] = {}
        # Per version: its detectors' counts (predictions, labelled outcomes).
        self._counts: dict[tuple[str, str], tuple[int, int]] = {}
        self._lock = asyncio.Lock()
        # Alarms on streams already in an open alert: taken in, nothing published.
        self.absorbed = 0

    def restore(self, alerts: Iterable[events_pb2.DriftAlert]) -> int:
        """Take up alerts left open by an earlier run (each as its latest event), so that a
        restart neither leaves them open for ever nor opens a second alert of the same kind.

        The detectors restart from nothing, so every restored stream counts as having
        alarmed at the detectors' event 0: it is back in control after `quiet_events`
        events without an alarm, as after any alarm; a report that flags it again keeps it
        open. Of several open alerts of one (model, version, kind), left by replicas that
        each kept their own, the last opened is taken up. Returns how many were."""
        taken = 0
        for alert in alerts:
            kind = KIND_NAMES.get(alert.kind)
            if kind is None or alert.state == events_pb2.ALERT_STATE_CLOSED:
                continue
            key = (alert.model, alert.version, kind)
            opened = alert.opened.ToDatetime(dt.UTC)
            current = self._open.get(key)
            if current is not None and current.opened > opened:
                continue
            state = _Open(alert.alert_id, opened, alert.severity, alert.revision)
            for score in alert.features:
                first, last = (
                    Evidence(score.feature, score.test, score.score, when, score.p_value)
                    for when in (
                        score.first_alarm.ToDatetime(dt.UTC),
                        score.last_alarm.ToDatetime(dt.UTC),
                    )
                )
                state.streams[score.feature] = _Stream(first, last, event=0)
            if alert.window.HasField("start") and alert.window.HasField("end"):
                state.window = (
                    alert.window.start.ToDatetime(dt.UTC),
                    alert.window.end.ToDatetime(dt.UTC),
                )
            state.rows = alert.window_rows
            state.last_alarm = self._clock()
            self._open[key] = state
            taken += 1
        return taken

    def open_alert(self, model: str, version: str, kind: str) -> str | None:
        """The id of the open alert of that kind, if any."""
        state = self._open.get((model, version, kind))
        return state.alert_id if state is not None else None

    async def from_report(self, report: Report) -> list[events_pb2.DriftAlert]:
        """Open or update an alert of each kind the report shows, and close those whose
        streams the last-N window shows back in control."""
        candidates = _report_candidates(report)
        async with self._lock:
            raised = []
            for candidate in candidates:
                key = (report.model, report.version, candidate.kind)
                if report.window_kind == "last_n" and key in self._open:
                    flagged = {e.stream for e in candidate.evidence}
                    for name, stream in self._open[key].streams.items():
                        stream.flagged = name in flagged
                raised += await self._take(report.model, report.version, candidate)
            raised += await self._close_quiet(report.model, report.version)
            return raised

    async def from_online(
        self,
        model: str,
        version: str,
        alarms: Sequence[tuple[OnlineAlarm, dt.datetime]],
        events: int,
        outcomes: int = 0,
    ) -> list[events_pb2.DriftAlert]:
        """Take in a batch's online alarms (each with the time of the event that fired it;
        none is fine) given the version's detector counts after the batch; close what has
        been quiet long enough."""
        async with self._lock:
            self._counts[(model, version)] = (events, outcomes)
            raised = []
            for kind in ("data", "prediction", "concept"):
                # In the order they fired: streams join an alert in the order of their
                # first alarms, however many alarms a batch brings.
                fired = sorted(
                    (a for a in alarms if a[0].kind == kind), key=lambda a: (a[1], a[0].index)
                )
                if fired:
                    raised += await self._take(
                        model, version, _online_candidate(kind, fired, events)
                    )
            raised += await self._close_quiet(model, version)
            return raised

    async def _take(
        self, model: str, version: str, candidate: _Candidate
    ) -> list[events_pb2.DriftAlert]:
        if not candidate.evidence:
            return []
        key = (model, version, candidate.kind)
        current = self._open.get(key)
        if current is None:
            if candidate.severity is None:
                return []
            state = _Open(uuid.uuid4().hex, self._now(), candidate.severity)
            _absorb(state, candidate)
            state.last_alarm = self._clock()
            alert = self._event(key, state, events_pb2.ALERT_STATE_OPEN, candidate.summary)
            await self._publish(alert)
            self._open[key] = state
            return [alert]
        state = copy.deepcopy(current)
        new = _absorb(state, candidate)
        state.last_alarm = self._clock()
        raised = candidate.severity is not None and candidate.severity > state.severity
        if raised:
            assert candidate.severity is not None
            state.severity = candidate.severity
        if not new and not raised:
            self.absorbed += 1
            self._open[key] = state
            return []
        state.revision += 1
        summary = _update_summary(candidate.kind, state, new, current.severity)
        alert = self._event(key, state, events_pb2.ALERT_STATE_UPDATED, summary)
        alert.previous_severity = current.severity
        await self._publish(alert)
        self._open[key] = state
        return [alert]

    async def _close_quiet(self, model: str, version: str) -> list[events_pb2.DriftAlert]:
        closed = []
        now = self._clock()
        events, outcomes = self._counts.get((model, version), (0, 0))
        for key in [k for k in self._open if k[:2] == (model, version)]:
            state = self._open[key]
            if now - state.last_alarm < self._debounce:
                continue
            if not all(
                self._in_control(name, s, events, outcomes) for name, s in state.streams.items()
            ):
                continue
            final = copy.deepcopy(state)
            final.revision += 1
            names = _names(state.streams)
            alert = self._event(
                key,
                final,
                events_pb2.ALERT_STATE_CLOSED,
                f"back in control: {names} (open since {state.opened:%Y-%m-%d %H:%M:%S} UTC, "
                f"{len(state.streams)} stream(s))",
            )
            alert.previous_severity = state.severity
            for score in alert.features:
                score.drifted = False
            await self._publish(alert)
            del self._open[key]
            closed.append(alert)
        return closed

    def _in_control(self, name: str, stream: _Stream, events: int, outcomes: int) -> bool:
        if stream.flagged:
            return False
        if stream.event is None:
            return True
        seen = outcomes if name == ERROR else events
        return seen - stream.event >= self._quiet

    def _event(
        self,
        key: Key,
        state: _Open,
        phase: events_pb2.AlertState.ValueType,
        summary: str,
    ) -> events_pb2.DriftAlert:
        model, version, kind = key
        alert = events_pb2.DriftAlert(
            alert_id=state.alert_id,
            kind=_KINDS[kind],
            model=model,
            version=version,
            severity=state.severity,
            summary=summary,
            window=common_pb2.TimeWindow(),
            window_rows=state.rows,
            state=phase,
            revision=state.revision,
        )
        # The open happens when the alert opened; a later event now.
        alert.time.FromDatetime(
            state.opened if phase == events_pb2.ALERT_STATE_OPEN else self._now()
        )
        alert.opened.FromDatetime(state.opened)
        if state.window is not None:
            alert.window.start.FromDatetime(state.window[0])
            alert.window.end.FromDatetime(state.window[1])
        events, outcomes = self._counts.get((model, version), (0, 0))
        for name, stream in state.streams.items():
            score = events_pb2.FeatureScore(
                feature=name,
                test=stream.last.test,
                score=stream.last.score,
                p_value=stream.last.p_value,
                drifted=not self._in_control(name, stream, events, outcomes),
            )
            score.first_alarm.FromDatetime(stream.first.time)
            score.last_alarm.FromDatetime(stream.last.time)
            alert.features.append(score)
        return alert


def _absorb(state: _Open, candidate: _Candidate) -> list[str]:
    """Take the candidate's evidence into the alert's state; the streams new to it."""
    new = []
    for evidence in candidate.evidence:
        stream = state.streams.get(evidence.stream)
        if stream is None:
            stream = state.streams[evidence.stream] = _Stream(evidence, evidence)
            new.append(evidence.stream)
        elif evidence.time >= stream.last.time:
            stream.last = evidence
        elif evidence.time < stream.first.time:
            stream.first = evidence
        if evidence.event is not None:
            stream.event = max(evidence.event, stream.event or 0)
        else:
            stream.flagged = True
    if candidate.window is not None:
        start, end = candidate.window
        if state.window is not None:
            start, end = min(start, state.window[0]), max(end, state.window[1])
        state.window = (start, end)
    state.rows = candidate.rows
    return new


def _update_summary(
    kind: str, state: _Open, new: Sequence[str], before: events_pb2.Severity.ValueType
) -> str:
    parts = [f"{len(state.streams)} stream(s) in {kind} drift: {_names(state.streams)}"]
    if new:
        parts.append(f"new: {', '.join(new[:TOP_FEATURES])}")
    if state.severity != before:
        parts.append(f"severity {SEVERITY_NAMES[before]} -> {SEVERITY_NAMES[state.severity]}")
    return "; ".join(parts)


def _names(streams: Iterable[str]) -> str:
    names = list(streams)
    more = f" and {len(names) - TOP_FEATURES} more" if len(names) > TOP_FEATURES else ""
    return ", ".join(names[:TOP_FEATURES]) + more


def _windowed(stream: StreamResult, at: dt.datetime) -> Evidence:
    # The score that made the change material: PSI, or the effect size (slow drift).
    test, score = stream.evidence
    return Evidence(stream.stream, test, score, at, stream.p_value)


def _report_candidates(report: Report) -> list[_Candidate]:
    """What the report says per kind: the flagged streams (possibly none) and, when the
    kind's own test fired, the severity that may open an alert."""
    at = report.end
    window = (report.start, report.end)
    drifted = report.drifted_features
    names = ", ".join(f.stream for f in drifted[:TOP_FEATURES])
    data = _Candidate(
        "data",
        [_windowed(f, at) for f in drifted],
        (events_pb2.SEVERITY_CRITICAL if report.major else events_pb2.SEVERITY_WARNING)
        if report.data_drift
        else None,
        f"{len(drifted)} of {len(report.features)} features drifted ({names})",
        window,
        report.rows,
    )
    prediction = _Candidate(
        "prediction",
        [_windowed(report.prediction, at)]
        if report.prediction is not None and report.prediction.drifted
        else [],
        events_pb2.SEVERITY_WARNING
        if report.prediction_drift and report.prediction is not None
        else None,
        f"output distribution drifted (PSI {report.prediction.psi:.3f}, "
        f"KS D {report.prediction.effect:.3f})"
        if report.prediction is not None
        else "",
        window,
        report.rows,
    )
    by_name = {f.stream: f for f in report.features}
    causes = [by_name[c.feature] for c in report.root_causes[:TOP_FEATURES] if c.feature in by_name]
    performance = ", ".join(f"{k} {v:.4g}" for k, v in report.performance.items())
    concept = _Candidate(
        "concept",
        [_windowed(f, at) for f in causes] if report.concept_drift else [],
        events_pb2.SEVERITY_CRITICAL if report.concept_drift else None,
        f"performance below the holdout on {report.labelled} labelled rows ({performance})",
        window,
        report.rows,
    )
    return [data, prediction, concept]


def _online_candidate(
    kind: str, fired: Sequence[tuple[OnlineAlarm, dt.datetime]], events: int
) -> _Candidate:
    names = _names(dict.fromkeys(a.stream for a, _ in fired))
    times = [at for _, at in fired]
    return _Candidate(
        kind,
        [Evidence(a.stream, "cusum", a.statistic, at, event=a.index + 1) for a, at in fired],
        events_pb2.SEVERITY_WARNING,
        f"online detector (CUSUM) alarm on {names}, change from event "
        f"{min(a.start for a, _ in fired)} detected at event {max(a.index for a, _ in fired)}",
        (min(times), max(times)),
        events,
    )
