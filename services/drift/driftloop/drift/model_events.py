"""The rollout history: every model event of the topic model-events, stored in ClickHouse.

The gateway announces rollouts started, canary steps, promotions and rollbacks on
model-events, the registry registrations and alias moves, the retrainer halted runs; the
topic forgets them after its retention. The drift service keeps each one in the table
model_events (a consumer group of its own, offsets committed after the insert), for
Grafana and for GetModelHistory (`driftloop report`). A row's key is the event's id
(`notices.model_event_id`), so a re-delivered record is stored once; its time is the
event's own, or when the record was published if that cannot be stored
(`notices.event_time`), as the webhooks have it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from driftloop.clickhouse.client import ClickHouse
from driftloop.drift.notices import event_time, model_event_id
from driftloop.kafka.consumer import Record
from driftloop.kit.times import stamp
from driftloop.v1 import events_pb2

TABLE = "model_events"
_PREFIX = "MODEL_EVENT_KIND_"
_UNKNOWN = "kind_"


@dataclass(frozen=True)
class StoredModelEvent:
    """One row of model_events (the fields are its columns, in order)."""

    event_id: str
    time: dt.datetime
    kind: str
    model: str
    version: str
    previous_version: str
    alias: str
    reason: str
    actor: str
    run_id: str
    run_state: str


COLUMNS = tuple(f.name for f in dataclasses.fields(StoredModelEvent))


def kind_name(kind: events_pb2.ModelEventKind.ValueType) -> str:
    """The proto's kind without its prefix, in lower case ("rollout_stepped"); a kind this
    code does not know yet (a newer producer's) is "kind_<number>"."""
    if kind in events_pb2.ModelEventKind.values():
        return events_pb2.ModelEventKind.Name(kind).removeprefix(_PREFIX).lower()
    return f"{_UNKNOWN}{kind}"


def kind_value(name: str) -> events_pb2.ModelEventKind.ValueType:
    """The inverse of `kind_name`."""
    if name.startswith(_UNKNOWN):
        return events_pb2.ModelEventKind.ValueType(int(name.removeprefix(_UNKNOWN)))
    return events_pb2.ModelEventKind.Value(_PREFIX + name.upper())


def stored(event: events_pb2.ModelEvent, published: dt.datetime) -> StoredModelEvent:
    return StoredModelEvent(
        event_id=model_event_id(event),
        time=event_time(event, published),
        kind=kind_name(event.kind),
        model=event.model,
        version=event.version,
        previous_version=event.previous_version,
        alias=event.alias,
        reason=event.reason,
        actor=event.actor,
        run_id=event.run_id,
        run_state=event.run_state,
    )


def to_proto(event: StoredModelEvent) -> events_pb2.ModelEvent:
    return events_pb2.ModelEvent(
        kind=kind_value(event.kind),
        model=event.model,
        version=event.version,
        alias=event.alias,
        previous_version=event.previous_version,
        reason=event.reason,
        actor=event.actor,
        time=stamp(event.time),
        run_id=event.run_id,
        run_state=event.run_state,
    )


class ModelEventLog:
    """The batch handler of the model-events consumer: one insert per batch."""

    def __init__(self, clickhouse: ClickHouse) -> None:
        self._ch = clickhouse

    async def probe(self) -> None:
        """Raise unless ClickHouse answers (the consumer's test of a failure that passes)."""
        await self._ch.ping()

    async def __call__(self, records: Sequence[Record]) -> None:
        rows = []
        for record in records:
            assert isinstance(record.value, events_pb2.ModelEvent)
            published = dt.datetime.fromtimestamp(record.timestamp_ms / 1000, dt.UTC)
            rows.append(dataclasses.astuple(stored(record.value, published)))
        await self._ch.insert(TABLE, COLUMNS, rows)

    async def events(
        self, model: str, start: dt.datetime, end: dt.datetime, limit: int
    ) -> list[StoredModelEvent]:
        """The model's events in [start, end), oldest first; the newest `limit` of them."""
        result = await self._ch.query(
            f"SELECT {', '.join(COLUMNS)} FROM (SELECT {', '.join(COLUMNS)} "
            f"FROM {self._ch.table(TABLE)} FINAL WHERE model = {{model:String}} "
            "AND time >= {start:DateTime64(6, 'UTC')} AND time < {end:DateTime64(6, 'UTC')} "
            "ORDER BY time DESC, event_id DESC LIMIT {limit:UInt32}) ORDER BY time, event_id",
            {"model": model, "start": start, "end": end, "limit": limit},
        )
        return [
            StoredModelEvent(str(event_id), time, *(str(value) for value in rest))
            for event_id, time, *rest in result.rows
        ]
