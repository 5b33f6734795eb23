"""Instants that cross a boundary: protobuf Timestamps from callers and producers.

A Timestamp is two integers that can hold anything; what driftloop can store and compute
with is ClickHouse DateTime64's range (1900-01-01 to 2299-12-31) with nanoseconds in
0..999,999,999. Every caller-supplied instant is converted here, so a bad one is the
caller's INVALID_ARGUMENT naming the field, never an exception deep inside.
"""

from __future__ import annotations

import datetime as dt

from google.protobuf.timestamp_pb2 import Timestamp

from driftloop.kit.errors import InvalidArgument

MIN_SECONDS = -2_208_988_800  # 1900-01-01T00:00:00Z
MAX_SECONDS = 10_413_791_999  # 2299-12-31T23:59:59Z


def timestamp_problem(seconds: int, nanos: int) -> str | None:
    """Why (seconds, nanos) is not a storable instant, or None when it is."""
    if not MIN_SECONDS <= seconds <= MAX_SECONDS:
        return f"{seconds} s since the epoch is outside the storable range 1900-01-01 to 2299-12-31"
    if not 0 <= nanos <= 999_999_999:
        return f"nanos is {nanos}, not in 0..999999999"
    return None


def to_datetime(field: str, stamp: Timestamp) -> dt.datetime:
    """The instant as an aware UTC datetime; INVALID_ARGUMENT naming `field` if it is not one."""
    problem = timestamp_problem(stamp.seconds, stamp.nanos)
    if problem is not None:
        raise InvalidArgument(field, problem)
    return stamp.ToDatetime(tzinfo=dt.UTC)


def stamp(at: dt.datetime) -> Timestamp:
    """An aware datetime as a Timestamp."""
    result = Timestamp()
    result.FromDatetime(at)
    return result
