"""Online detection over the sink's batches: every live model version gets its monitor
(built from its registry baseline), labels join into the error stream, alarms become
debounced alerts and points of the drift_metrics series."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence

import numpy as np
import numpy.typing as npt
from google.protobuf.message import Message

from driftloop.drift.alerts import Alerts
from driftloop.drift.baselines import BaselineSource
from driftloop.drift.labels import LabelJoin, Served, Truth
from driftloop.drift.online import OnlineAlarm, VersionMonitor
from driftloop.kit.errors import DriftloopError
from driftloop.models.convert import OUTPUT_KIND_NAMES
from driftloop.v1 import common_pb2, events_pb2

log = logging.getLogger(__name__)
FloatArray = npt.NDArray[np.float64]
# A version the registry could not describe is asked about again after this long.
RETRY_UNKNOWN_S = 30.0
RecordAlarm = Callable[[str, str, OnlineAlarm], Awaitable[object]]


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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._baselines = baselines
        self._join = join
        self._alerts = alerts
        self._false_alarm_events = false_alarm_events
        self._record_alarm = record_alarm
        self._clock = clock
        self._monitors: dict[tuple[str, str], VersionMonitor] = {}
        self._unknown: dict[tuple[str, str], float] = {}
        self.events: dict[tuple[str, str], int] = {}

    async def observe(self, events: Sequence[Message]) -> list[events_pb2.DriftAlert]:
        predictions: dict[tuple[str, str], list[events_pb2.PredictionEvent]] = {}
        outcomes: dict[tuple[str, str], list[float]] = {}
        for event in events:
            outcome = None
            if isinstance(event, events_pb2.PredictionEvent):
                if event.role != common_pb2.ROLE_LIVE or event.error:
                    continue
                predictions.setdefault((event.model, event.version), []).append(event)
                outcome = self._join.prediction(event.request_id, _served(event))
            elif isinstance(event, events_pb2.LabelEvent):
                outcome = self._join.label(event.request_id, _truth(event))
            if outcome is not None:
                outcomes.setdefault((outcome.model, outcome.version), []).append(outcome.error)
        raised = []
        for key in sorted(predictions.keys() | outcomes.keys()):
            monitor = await self._monitor(*key)
            if monitor is None:
                continue
            alarms = []
            served = predictions.get(key, [])
            if served:
                alarms += monitor.observe(
                    _feature_matrix(served, monitor.features), _outputs(served)
                )
                self.events[key] = self.events.get(key, 0) + len(served)
            alarms += monitor.observe_errors(np.asarray(outcomes.get(key, []), dtype=np.float64))
            # A lasting shift re-alarms after every h of evidence: keep each stream's first.
            alarms = list({alarm.stream: alarm for alarm in reversed(alarms)}.values())[::-1]
            for alarm in alarms:
                log.warning(
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
            if alarms:
                raised += await self._alerts.from_online(*key, alarms, self.events.get(key, 0))
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


def _served(event: events_pb2.PredictionEvent) -> Served:
    kind = OUTPUT_KIND_NAMES.get(event.output.kind, "regression")
    return Served(event.model, event.version, kind, event.output.label, event.output.value)


def _truth(event: events_pb2.LabelEvent) -> Truth:
    is_label = event.WhichOneof("truth") == "label"
    return Truth(event.label, event.value, is_label)


def _feature_matrix(
    events: Sequence[events_pb2.PredictionEvent], names: Sequence[str]
) -> FloatArray:
    nan = float("nan")
    rows = []
    for event in events:
        features = event.features
        rows.append([features[name].number if name in features else nan for name in names])
    return np.asarray(rows, dtype=np.float64).reshape(len(events), len(names))


def _outputs(events: Sequence[events_pb2.PredictionEvent]) -> FloatArray:
    return np.fromiter((event.output.value for event in events), np.float64, len(events))
