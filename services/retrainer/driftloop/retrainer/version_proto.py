"""Conversions between the registry's versions and the ModelVersion message.

The servicer converts requests and answers with them; the store keeps each record as its
serialised message (so what it held before these types existed still reads back).
Timestamps become datetimes, which keep microseconds: a registrant's window bound given
in nanoseconds is kept to the microsecond.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from driftloop.kit.times import stamp, to_datetime
from driftloop.models.convert import (
    OUTPUT_KINDS,
    output_kind_from_proto,
    schema_from_proto,
    schema_to_proto,
)
from driftloop.retrainer.registry import DataLineage, NewVersion, VersionRecord, check_identity
from driftloop.v1 import common_pb2, registry_pb2


def _instant(window: common_pb2.TimeWindow, bound: Literal["start", "end"]) -> dt.datetime | None:
    if not window.HasField(bound):
        return None
    return to_datetime(f"version.data.window.{bound}", getattr(window, bound))


def new_version_from_proto(message: registry_pb2.ModelVersion) -> NewVersion:
    """The registration a ModelVersion asks for; INVALID_ARGUMENT naming the `version.` field
    at fault. Its version, created time and aliases are the registry's to set: ignored."""
    check_identity(message.model, message.flavor)
    return _supplied(message)


def _supplied(message: registry_pb2.ModelVersion) -> NewVersion:
    data = message.data
    return NewVersion(
        model=message.model,
        flavor=message.flavor,
        artifact_sha256=message.artifact_sha256,
        schema=schema_from_proto(message.schema, "version.schema"),
        data=DataLineage(
            source=data.source,
            row_count=data.row_count,
            content_sha256=data.content_sha256,
            window_start=_instant(data.window, "start"),
            window_end=_instant(data.window, "end"),
        ),
        output_kind=output_kind_from_proto(message.output_kind, "version.output_kind"),
        entry_point=message.entry_point,
        pickle_trusted=message.pickle_trusted,
        parent_version=message.parent_version,
        tags=dict(message.tags),
        metrics={metric.name: metric.value for metric in message.metrics},
        hyperparameters=dict(message.hyperparameters),
        seed=message.seed,
        code_version=message.code_version,
        environment=dict(message.environment),
        baseline=message.baseline if message.HasField("baseline") else None,
        created_by=message.created_by,
    )


def version_from_proto(message: registry_pb2.ModelVersion) -> VersionRecord:
    """A stored record read back (it was validated when it was registered)."""
    return VersionRecord.of(
        _supplied(message),
        version=message.version,
        created=message.created.ToDatetime(tzinfo=dt.UTC),
        aliases=tuple(message.aliases),
    )


def version_to_proto(record: VersionRecord) -> registry_pb2.ModelVersion:
    data = record.data
    message = registry_pb2.ModelVersion(
        model=record.model,
        version=record.version,
        flavor=record.flavor,
        artifact_sha256=record.artifact_sha256,
        schema=schema_to_proto(record.schema),
        output_kind=OUTPUT_KINDS[record.output_kind],
        metrics=[registry_pb2.Metric(name=k, value=v) for k, v in record.metrics.items()],
        hyperparameters=record.hyperparameters,
        seed=record.seed,
        code_version=record.code_version,
        environment=record.environment,
        created_by=record.created_by,
        created=stamp(record.created),
        tags=record.tags,
        parent_version=record.parent_version,
        aliases=record.aliases,
        entry_point=record.entry_point,
        pickle_trusted=record.pickle_trusted,
    )
    if data != DataLineage():  # an absent snapshot stays absent
        message.data.CopyFrom(
            registry_pb2.DataSnapshot(
                source=data.source, row_count=data.row_count, content_sha256=data.content_sha256
            )
        )
    if data.window_start is not None:
        message.data.window.start.CopyFrom(stamp(data.window_start))
    if data.window_end is not None:
        message.data.window.end.CopyFrom(stamp(data.window_end))
    if record.baseline is not None:
        message.baseline.CopyFrom(record.baseline)
    return message
