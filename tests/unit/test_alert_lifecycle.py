"""The alert lifecycle without I/O: an alert opens once per (model, version, kind), takes in
every stream that alarms later (an update of the same alert id, never swallowed), raises
its severity, and closes once its streams are back in control; on seeded streams with
exact detection points."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from driftloop.drift.alerts import Alerts
from driftloop.drift.online import ERROR, OnlineAlarm, VersionMonitor
from driftloop.drift.report import Thresholds, build_report
from driftloop.drift.windows import WindowData
from driftloop.models.table import Table
from driftloop.models.training import TrainedModel
from driftloop.v1 import events_pb2
from tests import drift_streams

T0 = drift_streams.T0
# x1, x3, x5 and x7 drift by 0.8 sigma one after another, and all come back at row 9000.
STAGGERED = {
    "x1": (1000, 9000, 0.8),
    "x3": (2500, 9000, 0.8),
    "x5": (4000, 9000, 0.8),
    "x7": (5500, 9000, 0.8),
}


@pytest.fixture(scope="module")
def trained() -> TrainedModel:
    return drift_streams.train()


class Published:
    def __init__(self) -> None:
        self.events: list[events_pb2.DriftAlert] = []
        self.failing = False

    async def __call__(self, alert: events_pb2.DriftAlert) -> None:
        if self.failing:
            raise ConnectionError("the broker is away")
        self.events.append(alert)

    def of(self, kind: int) -> list[events_pb2.DriftAlert]:
        return [e for e in self.events if e.kind == kind]


def at(event: int) -> dt.datetime:
    """The prediction time of event `event` of the seeded stream (one a second)."""
    return T0 + dt.timedelta(seconds=event)


async def run_online(
    alerts: Alerts, trained: TrainedModel, data: Table, batch: int = 1000
) -> VersionMonitor:
    """The detection loop's part: feed the monitor batch by batch, hand every alarm with
    its event's time and the counts to the alerts."""
    monitor = VersionMonitor(trained.baseline, "binary", 10_000_000)
    features = np.column_stack(
        [np.asarray(data.columns[n], dtype=np.float64) for n in monitor.features]
    )
    outputs = trained.model.predict_table(data)
    for start in range(0, data.rows, batch):
        alarms = monitor.observe(features[start : start + batch], outputs[start : start + batch])
        events = min(start + batch, data.rows)
        await alerts.from_online("m", "1", [(a, at(a.index)) for a in alarms], events)
    return monitor


async def test_four_features_drifting_at_different_times_give_one_alert_naming_all_four(
    trained: TrainedModel,
) -> None:
    published = Published()
    alerts = Alerts(published, debounce_s=0, quiet_events=2000)
    data = drift_streams.staggered(16_000, 51, STAGGERED)
    await run_online(alerts, trained, data)
    data_events = published.of(events_pb2.DRIFT_KIND_DATA)
    # One alert: its open, three updates (a stream each), its close.
    assert len({e.alert_id for e in data_events}) == 1
    assert [e.state for e in data_events] == [
        events_pb2.ALERT_STATE_OPEN,
        events_pb2.ALERT_STATE_UPDATED,
        events_pb2.ALERT_STATE_UPDATED,
        events_pb2.ALERT_STATE_UPDATED,
        events_pb2.ALERT_STATE_CLOSED,
    ]
    assert [e.revision for e in data_events] == [0, 1, 2, 3, 4]
    assert [len(e.features) for e in data_events] == [1, 2, 3, 4, 4]
    last_update = data_events[3]
    # Each stream with the time of its first alarm: the event the detector fired at (the
    # exact detection points of this seeded stream), after its own shift began. (The
    # spread and missing-value streams share the budget: each threshold is a little higher
    # than with the 21 mean streams alone, which fired at 1081, 2567, 4058 and 5529.)
    first = {f.feature: f.first_alarm.ToDatetime(dt.UTC) for f in last_update.features}
    assert first == {"x1": at(1087), "x3": at(2568), "x5": at(4059), "x7": at(5530)}
    assert [f.feature for f in last_update.features] == ["x1", "x3", "x5", "x7"]
    assert all(f.drifted and f.test == "cusum" and f.score > 0 for f in last_update.features)
    assert "new: x7" in last_update.summary and "4 stream(s)" in last_update.summary
    assert {e.opened.ToDatetime(dt.UTC) for e in data_events} == {
        data_events[0].time.ToDatetime(dt.UTC)
    }
    closed = data_events[-1]
    assert not any(f.drifted for f in closed.features) and "back in control" in closed.summary
    # The output moved with x1 (the model leans on it): a prediction alert of its own.
    prediction = published.of(events_pb2.DRIFT_KIND_PREDICTION)
    assert [e.state for e in prediction] == [
        events_pb2.ALERT_STATE_OPEN,
        events_pb2.ALERT_STATE_CLOSED,
    ]
    assert alerts.open_alert("m", "1", "data") is None


async def test_repeated_alarms_of_a_stream_in_the_alert_publish_nothing(
    trained: TrainedModel,
) -> None:
    published = Published()
    alerts = Alerts(published, debounce_s=0, quiet_events=2000)
    data = drift_streams.staggered(8000, 52, {"x4": (0, 8000, 0.8)})
    await run_online(alerts, trained, data)
    (opened,) = published.of(events_pb2.DRIFT_KIND_DATA)
    assert [f.feature for f in opened.features] == ["x4"]
    assert alerts.absorbed == 7  # each later batch re-alarmed on x4: no news, no event
    assert alerts.open_alert("m", "1", "data") == opened.alert_id


def alarm(stream: str, index: int, kind: str = "data") -> OnlineAlarm:
    return OnlineAlarm(kind, stream, index, index - 50, 1, 30.0)


async def test_the_alert_stays_open_for_the_debounce_period_after_its_last_alarm() -> None:
    published = Published()
    clock = [0.0]
    alerts = Alerts(published, debounce_s=300, quiet_events=100, clock=lambda: clock[0])
    await alerts.from_online("m", "1", [(alarm("x1", 10), at(10))], 20)
    clock[0] = 200.0
    await alerts.from_online("m", "1", [], 5000)  # quiet for long enough, not for long
    assert [e.state for e in published.events] == [events_pb2.ALERT_STATE_OPEN]
    await alerts.from_online("m", "1", [(alarm("x2", 5100), at(5100))], 5200)
    clock[0] = 450.0  # 250 s after x2's alarm
    await alerts.from_online("m", "1", [], 9000)
    assert published.events[-1].state == events_pb2.ALERT_STATE_UPDATED
    clock[0] = 501.0
    await alerts.from_online("m", "1", [], 9000)
    assert published.events[-1].state == events_pb2.ALERT_STATE_CLOSED
    # After the close, an alarm opens a new alert.
    await alerts.from_online("m", "1", [(alarm("x1", 9500), at(9500))], 9600)
    assert published.events[-1].state == events_pb2.ALERT_STATE_OPEN
    assert len({e.alert_id for e in published.events}) == 2


async def test_a_failed_publish_changes_nothing_and_the_next_alarm_tries_again() -> None:
    published = Published()
    alerts = Alerts(published, debounce_s=0, quiet_events=100)
    await alerts.from_online("m", "1", [(alarm("x1", 10), at(10))], 20)
    published.failing = True
    with pytest.raises(ConnectionError):
        await alerts.from_online("m", "1", [(alarm("x2", 30), at(30))], 40)
    published.failing = False
    await alerts.from_online("m", "1", [(alarm("x2", 50), at(50))], 60)
    assert [e.revision for e in published.events] == [0, 1]
    assert [f.feature for f in published.events[1].features] == ["x1", "x2"]


def window(trained: TrainedModel, data: Table, end: dt.datetime) -> WindowData:
    scores = trained.model.predict_table(data)
    rows = data.rows
    return WindowData(
        start=end - dt.timedelta(hours=1),
        end=end,
        numbers={n: np.asarray(data.columns[n], dtype=np.float64) for n in drift_streams.NAMES},
        categories={},
        output_value=scores,
        output_label=np.where(scores >= 0.5, "1", "0").astype(object),
        labelled=np.zeros(rows, dtype=bool),
        truth_label=np.full(rows, "", dtype=object),
        truth_value=np.zeros(rows),
        truth_is_label=np.zeros(rows, dtype=bool),
    )


async def test_a_report_raises_the_severity_of_an_online_alert_and_a_clean_one_closes_it(
    trained: TrainedModel,
) -> None:
    published = Published()
    alerts = Alerts(published, debounce_s=0, quiet_events=100)
    await alerts.from_online("m", "1", [(alarm("x3", 10), at(10))], 20)
    assert published.events[0].severity == events_pb2.SEVERITY_WARNING
    shifted = drift_streams.table(5000, seed=53, shift={"x3": 0.8, "x6": 0.8})
    end = T0 + dt.timedelta(hours=2)
    report = build_report(
        "m", "1", "last_n", "binary", trained.baseline, window(trained, shifted, end), Thresholds()
    )
    assert report.major
    (update,) = await alerts.from_report(report)
    assert update.state == events_pb2.ALERT_STATE_UPDATED and update.revision == 1
    assert update.severity == events_pb2.SEVERITY_CRITICAL
    assert update.previous_severity == events_pb2.SEVERITY_WARNING
    assert [f.feature for f in update.features] == ["x3", "x6"]
    x6 = update.features[1]
    assert x6.test == "psi" and x6.first_alarm.ToDatetime(dt.UTC) == end
    # The detector has been quiet for long enough, but the window still shows the drift.
    await alerts.from_online("m", "1", [], 5000)
    assert published.events[-1].revision == 1
    stable = drift_streams.table(5000, seed=54)
    clean = build_report(
        "m", "1", "last_n", "binary", trained.baseline, window(trained, stable, end), Thresholds()
    )
    (closed,) = await alerts.from_report(clean)
    assert closed.state == events_pb2.ALERT_STATE_CLOSED and closed.revision == 2
    assert closed.alert_id == update.alert_id == published.events[0].alert_id


async def test_streams_alarming_in_one_batch_join_the_alert_in_the_order_they_fired() -> None:
    published = Published()
    alerts = Alerts(published, debounce_s=0, quiet_events=2000)
    # The later alarm has the larger statistic: the order is still by time.
    later = OnlineAlarm("data", "x7", 5530, 5400, 1, 40.0)
    earlier = OnlineAlarm("data", "x5", 4059, 3990, 1, 31.0)
    await alerts.from_online("m", "1", [(later, at(5530)), (earlier, at(4059))], 6000)
    (opened,) = published.of(events_pb2.DRIFT_KIND_DATA)
    assert [f.feature for f in opened.features] == ["x5", "x7"]


async def test_a_restarted_service_takes_up_the_alerts_left_open_and_closes_them_later() -> None:
    before = Published()
    first = Alerts(before, debounce_s=0, quiet_events=100)
    await first.from_online("m", "1", [(alarm("x1", 10), at(10))], 20)
    await first.from_online("m", "1", [(alarm("x2", 30), at(30))], 40)
    await first.from_online("m", "1", [(alarm(ERROR, 50, "concept"), at(50))], 60)
    closed = Published()
    finished = Alerts(closed, debounce_s=0, quiet_events=100)
    await finished.from_online("m", "2", [(alarm("x1", 10), at(10))], 20)
    await finished.from_online("m", "2", [], 500)  # quiet: closed
    assert closed.events[-1].state == events_pb2.ALERT_STATE_CLOSED
    latest = {e.alert_id: e for e in before.events + closed.events}  # each alert's last event

    published = Published()
    again = Alerts(published, debounce_s=0, quiet_events=100)
    assert again.restore(latest.values()) == 2  # v1's data and concept; v2's stays closed
    (data,) = [e for e in before.events if e.revision == 1]
    assert again.open_alert("m", "1", "data") == data.alert_id
    assert again.open_alert("m", "1", "concept") == before.events[-1].alert_id
    assert again.open_alert("m", "2", "data") is None
    # The detectors start again from nothing: a new stream's alarm updates the same alert.
    await again.from_online("m", "1", [(alarm("x4", 5), at(5000))], 10)
    (update,) = published.events
    assert (update.alert_id, update.state, update.revision) == (
        data.alert_id,
        events_pb2.ALERT_STATE_UPDATED,
        2,
    )
    assert [f.feature for f in update.features] == ["x1", "x2", "x4"]
    assert update.features[0].first_alarm.ToDatetime(dt.UTC) == at(10)
    # Quiet for quiet_events after the restart: the restored data alert closes, with its
    # id; the concept alert waits for as many labelled outcomes.
    await again.from_online("m", "1", [], 200)
    assert len(published.events) == 2
    assert published.events[-1].alert_id == data.alert_id
    assert published.events[-1].state == events_pb2.ALERT_STATE_CLOSED
    assert published.events[-1].revision == 3
    assert again.open_alert("m", "1", "concept") is not None
    await again.from_online("m", "1", [], 200, outcomes=150)
    assert published.events[-1].kind == events_pb2.DRIFT_KIND_CONCEPT
    assert published.events[-1].state == events_pb2.ALERT_STATE_CLOSED
