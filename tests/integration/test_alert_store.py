"""Alert events in the real ClickHouse engine: a drift_alerts table made before alerts had
a life is migrated by the schema, and ListAlerts reads each alert as its latest event."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

from driftloop.clickhouse.client import ClickHouse
from driftloop.drift.store import DriftStore
from driftloop.kit.times import stamp
from driftloop.v1 import events_pb2

T0 = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
# The table as the schema made it before the lifecycle (no state, revision, opened,
# first_alarms).
OLD_TABLE = """
CREATE TABLE {table}
(
    alert_id String,
    time DateTime64(6, 'UTC'),
    model LowCardinality(String),
    version LowCardinality(String),
    kind Enum8('unspecified' = 0, 'data' = 1, 'prediction' = 2, 'concept' = 3),
    severity Enum8('unspecified' = 0, 'info' = 1, 'warning' = 2, 'critical' = 3),
    window_start DateTime64(6, 'UTC'),
    window_end DateTime64(6, 'UTC'),
    window_rows UInt64,
    features Array(String),
    scores Array(Float64),
    summary String,
    record String
)
ENGINE = ReplacingMergeTree
ORDER BY (model, time, alert_id)
"""


def event(alert_id: str, revision: int, state: int, minutes: int, *features: str) -> Any:
    alert = events_pb2.DriftAlert(
        alert_id=alert_id,
        kind=events_pb2.DRIFT_KIND_DATA,
        model="churn",
        version="1",
        severity=events_pb2.SEVERITY_WARNING,
        state=state,  # type: ignore[arg-type]  # an enum value passed as int
        revision=revision,
        time=stamp(T0 + dt.timedelta(minutes=minutes)),
        opened=stamp(T0),
    )
    for i, name in enumerate(features):
        score = alert.features.add(feature=name, test="cusum", score=20.0, drifted=True)
        score.first_alarm.CopyFrom(stamp(T0 + dt.timedelta(minutes=i)))
    return alert


async def test_an_alerts_table_from_before_the_lifecycle_is_migrated(
    clickhouse: ClickHouse,
) -> None:
    table = clickhouse.table("drift_alerts")
    await clickhouse.command(f"DROP TABLE {table}")
    await clickhouse.command(OLD_TABLE.format(table=table))
    old = events_pb2.DriftAlert(alert_id="old", model="churn", version="1", time=stamp(T0))
    await clickhouse.command(
        f"INSERT INTO {table} (alert_id, time, model, version, kind, severity, record) "
        "VALUES ('old', '2026-06-01 00:00:00', 'churn', '1', 'data', 'warning', "
        f"'{base64.b64encode(old.SerializeToString()).decode()}')"
    )
    await clickhouse.apply_schema()
    await clickhouse.apply_schema()  # twice: changing nothing the second time
    result = await clickhouse.query(
        f"SELECT toString(state), revision, opened = time, length(first_alarms) FROM {table}"
    )
    assert result.rows == [("open", 0, 1, 0)]
    store = DriftStore(clickhouse)
    await store.write_alert(event("new", 0, events_pb2.ALERT_STATE_OPEN, 5, "x1"))
    assert [a.alert_id for a in await store.alerts("churn", None, None, 10)] == ["new", "old"]


async def test_list_alerts_gives_each_alert_as_its_latest_event(clickhouse: ClickHouse) -> None:
    store = DriftStore(clickhouse)
    events = [
        event("a", 0, events_pb2.ALERT_STATE_OPEN, 1, "x1"),
        event("a", 1, events_pb2.ALERT_STATE_UPDATED, 2, "x1", "x2"),
        event("b", 0, events_pb2.ALERT_STATE_OPEN, 3, "x9"),
        event("a", 2, events_pb2.ALERT_STATE_CLOSED, 4, "x1", "x2"),
    ]
    for alert in events:
        await store.write_alert(alert)
    await store.write_alert(events[1])  # a replayed event is one row
    listed = await store.alerts("churn", None, None, 10)
    assert [(a.alert_id, a.revision) for a in listed] == [("a", 2), ("b", 0)]
    assert listed[0] == events[3]
    # A period that ends before the close sees the alert as it was then.
    before_close = await store.alerts("churn", None, T0 + dt.timedelta(minutes=3), 10)
    assert [(a.alert_id, a.revision) for a in before_close] == [("a", 1)]
    rows = await clickhouse.query(
        "SELECT revision, toString(state), features, "
        "arrayMap(t -> toUnixTimestamp64Micro(t), first_alarms) "
        f"FROM {clickhouse.table('drift_alerts')} FINAL WHERE alert_id = 'a' ORDER BY revision"
    )
    micros = int(T0.timestamp() * 1e6)
    assert rows.rows == [
        (0, "open", ["x1"], [micros]),
        (1, "updated", ["x1", "x2"], [micros, micros + 60_000_000]),
        (2, "closed", ["x1", "x2"], [micros, micros + 60_000_000]),
    ]


async def test_the_open_alerts_are_those_whose_latest_event_is_not_a_close(
    clickhouse: ClickHouse,
) -> None:
    store = DriftStore(clickhouse)
    for alert in [
        event("a", 0, events_pb2.ALERT_STATE_OPEN, 1, "x1"),
        event("a", 1, events_pb2.ALERT_STATE_CLOSED, 2, "x1"),
        event("b", 0, events_pb2.ALERT_STATE_OPEN, 3, "x9"),
        event("b", 1, events_pb2.ALERT_STATE_UPDATED, 4, "x9", "x2"),
        event("c", 0, events_pb2.ALERT_STATE_OPEN, 5, "x3"),
    ]:
        await store.write_alert(alert)
    assert [(a.alert_id, a.revision) for a in await store.open_alerts()] == [("b", 1), ("c", 0)]
