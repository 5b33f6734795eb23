"""The request's features written into the prediction log and the shadow mirror as bytes:
the event parsed back holds exactly the map a copy (`features.MergeFrom`) gives, for
numbers, categories, long values (multi-byte lengths), an empty row, and a row with
unknown fields (which falls back to the copy)."""

from __future__ import annotations

import pytest

from driftloop.gateway.wire import map_entries, with_features
from driftloop.v1 import common_pb2, events_pb2

ROWS = {
    "numbers": common_pb2.Row(
        features={f"f{i}": common_pb2.FeatureValue(number=i * 0.1 - 1) for i in range(20)}
    ),
    "categories": common_pb2.Row(
        features={"country": common_pb2.FeatureValue(category="FR"), "x": common_pb2.FeatureValue()}
    ),
    "long values": common_pb2.Row(
        features={
            "k" * 300: common_pb2.FeatureValue(category="v" * 20_000),
            "n": common_pb2.FeatureValue(number=2.5),
        }
    ),
    "empty": common_pb2.Row(),
}


def copied(
    message: events_pb2.PredictionEvent | events_pb2.ShadowRequest, row: common_pb2.Row
) -> bytes:
    message.features.MergeFrom(row.features)
    return message.SerializeToString()


@pytest.mark.parametrize("name", ROWS)
def test_the_event_holds_the_rows_features_as_a_copy_would(name: str) -> None:
    row = ROWS[name]
    event = events_pb2.PredictionEvent(request_id="r1", model="m", version="2", latency_us=7)
    event.output.value = 0.25
    written = events_pb2.PredictionEvent.FromString(with_features(event, row.SerializeToString()))
    expected = events_pb2.PredictionEvent.FromString(copied(event, row))
    assert written == expected
    assert dict(written.features) == dict(row.features)


@pytest.mark.parametrize("name", ROWS)
def test_the_mirror_holds_the_rows_features_as_a_copy_would(name: str) -> None:
    row = ROWS[name]
    mirror = events_pb2.ShadowRequest(request_id="r1", model="m", shadow_versions=["3"])
    written = events_pb2.ShadowRequest.FromString(with_features(mirror, row.SerializeToString()))
    assert written == events_pb2.ShadowRequest.FromString(copied(mirror, row))


def test_a_row_with_unknown_fields_is_copied_instead() -> None:
    row = ROWS["numbers"]
    unknown = b"\x10\x05"  # field 2, varint 5: not a Row field
    raw = row.SerializeToString() + unknown
    assert map_entries(raw, 8) is None
    event = events_pb2.PredictionEvent(request_id="r1")
    written = events_pb2.PredictionEvent.FromString(with_features(event, raw))
    assert dict(written.features) == dict(row.features)


def test_a_truncated_row_is_not_retagged() -> None:
    raw = ROWS["numbers"].SerializeToString()
    assert map_entries(raw[:-3], 8) is None
    assert map_entries(raw, 8) is not None
