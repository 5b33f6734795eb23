from __future__ import annotations

import datetime as dt

import pytest

from driftloop.kafka.codecs import DecodeError, decode_label, decode_prediction
from driftloop.v1 import events_pb2


def prediction(**fields: object) -> events_pb2.PredictionEvent:
    event = events_pb2.PredictionEvent(request_id="r1", model="churn", version="3")
    event.time.FromDatetime(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    for name, value in fields.items():
        setattr(event, name, value)
    return event


def test_a_valid_prediction_round_trips() -> None:
    event = prediction()
    event.features["age"].number = 41.0
    assert decode_prediction(event.SerializeToString()) == event


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"request_id": ""}, "request_id is empty"),
        ({"request_id": "x" * 129}, "longer than 128"),
        ({"model": "bad model"}, "not a valid model name"),
        ({"version": ""}, "not a valid version"),
    ],
)
def test_invalid_predictions_say_why(fields: dict[str, object], reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode_prediction(prediction(**fields).SerializeToString())


def test_prediction_without_time_is_refused() -> None:
    event = prediction()
    event.ClearField("time")
    with pytest.raises(DecodeError, match="time is not set"):
        decode_prediction(event.SerializeToString())


def test_garbage_bytes_are_refused() -> None:
    with pytest.raises(DecodeError):
        decode_prediction(b"\xff\xff\xff\xff not protobuf")


def test_labels_come_as_protobuf_or_json() -> None:
    binary = events_pb2.LabelEvent(request_id="r1", label="1", source="billing")
    assert decode_label(binary.SerializeToString()) == binary
    from_json = decode_label(b' {"request_id": "r2", "value": 3.5, "source": "ops"}')
    assert from_json.request_id == "r2"
    assert from_json.WhichOneof("truth") == "value"
    assert from_json.value == 3.5


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"request_id": "r1"}', "neither label nor value"),
        (b'{"label": "1"}', "request_id is empty"),
        (b'{"request_id": "r1", "label": "1", "colour": "red"}', "not a valid JSON"),
        (b'{"request_id": ', "not a valid JSON"),
    ],
)
def test_invalid_labels_say_why(raw: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode_label(raw)
