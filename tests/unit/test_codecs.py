from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest

from driftloop.kafka.codecs import (
    DecodeError,
    WirePrediction,
    decode_label,
    decode_many,
    decode_model_event,
    decode_prediction,
    decode_prediction_rows,
)
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
        ({"version": ""}, "not a version number"),
        ({"version": "01"}, "not a version number"),
        ({"entity_key": "k" * 257}, "entity_key is 257 characters"),
        ({"variant": "v" * 129}, "variant is 129 characters"),
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


@pytest.mark.parametrize(
    ("seconds", "nanos", "reason"),
    [
        (2**62, 0, "outside the storable range"),
        (-(2**40), 0, "outside the storable range"),
        (10_413_792_000, 0, "outside the storable range"),  # 2300-01-01
        (1_700_000_000, 2_000_000_000, "nanos is 2000000000"),
    ],
)
def test_times_the_store_cannot_hold_are_refused(seconds: int, nanos: int, reason: str) -> None:
    event = prediction()
    event.time.seconds, event.time.nanos = seconds, nanos
    with pytest.raises(DecodeError, match=reason):
        decode_prediction(event.SerializeToString())
    label = events_pb2.LabelEvent(request_id="r1", label="1")
    label.time.seconds, label.time.nanos = seconds, nanos
    with pytest.raises(DecodeError, match=reason):
        decode_label(label.SerializeToString())


def test_the_poison_label_of_issue_9_is_refused_with_its_reason() -> None:
    raw = bytes.fromhex("0a06706f69736f6e120a088080808080808080401a0131")
    with pytest.raises(DecodeError, match="outside the storable range"):
        decode_label(raw)


def test_the_edges_of_the_storable_range_are_accepted() -> None:
    for seconds in (-2_208_988_800, 0, 10_413_791_999):
        event = prediction()
        event.time.seconds = seconds
        assert decode_prediction(event.SerializeToString()).time.seconds == seconds


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda e: setattr(e.output, "value", float("nan")), "output.value is nan"),
        (lambda e: e.output.probabilities.__setitem__("1", float("inf")), "not a finite"),
        (lambda e: setattr(e.features["x"], "number", float("-inf")), "infinity"),
        (lambda e: setattr(e.features["bad name"], "number", 1.0), "feature name"),
        (lambda e: setattr(e.features["c"], "category", "c" * 300), "features.c is 300"),
    ],
)
def test_values_the_store_or_the_statistics_cannot_take_are_refused(
    mutate: Callable[[events_pb2.PredictionEvent], object], reason: str
) -> None:
    event = prediction()
    mutate(event)
    with pytest.raises(DecodeError, match=reason):
        decode_prediction(event.SerializeToString())


def test_a_missing_feature_value_is_accepted() -> None:
    event = prediction()
    event.features["x"].number = float("nan")
    assert decode_prediction(event.SerializeToString()).features["x"].number != 0.0


def test_a_regression_label_must_be_finite() -> None:
    with pytest.raises(DecodeError, match="value is inf"):
        decode_label(events_pb2.LabelEvent(request_id="r", value=float("inf")).SerializeToString())


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


def test_a_model_event_needs_a_model_name_and_a_kind() -> None:
    event = events_pb2.ModelEvent(kind=events_pb2.MODEL_EVENT_KIND_PROMOTED, model="churn")
    assert decode_model_event(event.SerializeToString()) == event
    with pytest.raises(DecodeError, match="kind is not set"):
        decode_model_event(events_pb2.ModelEvent(model="churn").SerializeToString())
    with pytest.raises(DecodeError, match="not a valid model name"):
        decode_model_event(b"")


def test_a_batch_gets_the_verdict_and_reason_each_record_gets_alone() -> None:
    good = prediction()
    for index in range(20):
        good.features[f"x{index}"].number = index / 3
    good.features["plan"].category = "é" * 256  # 256 characters, 512 bytes: storable
    repeated = prediction().SerializeToString() + (
        # key "x", first -inf then 1.0: the map keeps the last, which is storable
        bytes.fromhex("420e0a0178120909000000000000f0ff")
        + bytes.fromhex("420e0a0178120909000000000000f03f")
    )
    bad = [
        prediction(request_id="").SerializeToString(),
        prediction(model="bad model").SerializeToString(),
        prediction(version="01").SerializeToString(),
        prediction(entity_key="k" * 257).SerializeToString(),
        b"\xff\xff\xff\xff not protobuf",
    ]
    for mutate in (
        lambda e: setattr(e.output, "value", float("nan")),
        lambda e: e.output.probabilities.__setitem__("1", float("inf")),
        lambda e: setattr(e.features["x"], "number", float("-inf")),
        lambda e: setattr(e.features["bad name"], "number", 1.0),
        lambda e: setattr(e.features["c"], "category", "c" * 300),
        lambda e: e.ClearField("time"),
    ):
        event = prediction()
        event.features["y"].number = 2.0
        mutate(event)
        bad.append(event.SerializeToString())
    raws = [good.SerializeToString(), repeated, *bad, good.SerializeToString()]

    def alone(raw: bytes) -> object:
        try:
            return decode_prediction(raw)
        except DecodeError as error:
            return f"refused: {error}"

    batch = [
        f"refused: {value}" if isinstance(value, DecodeError) else value
        for value in decode_many(decode_prediction, raws)
    ]
    assert batch == [alone(raw) for raw in raws]
    assert sum(isinstance(value, str) for value in batch) == len(bad)


def verdicts(raws: list[bytes]) -> list[object]:
    """What the row decoder gives each record of a batch: a WirePrediction as the message
    it stands for, a message, or the refusal's reason."""
    return [
        f"refused: {value}"
        if isinstance(value, DecodeError)
        else value.message()
        if isinstance(value, WirePrediction)
        else value
        for value in decode_many(decode_prediction_rows, raws)
    ]


def alone(raw: bytes) -> object:
    try:
        return decode_prediction(raw)
    except DecodeError as error:
        return f"refused: {error}"


def test_the_row_decoder_gives_each_record_the_verdict_and_reason_it_gets_alone() -> None:
    good = prediction(variant="b", entity_key="k", error="")
    for index in range(20):
        good.features[f"x{index}"].number = index / 3
    good.features["plan"].category = "basic"
    long_category = prediction()
    long_category.features["plan"].category = "é" * 256  # storable, read field by field
    twice = prediction().SerializeToString()
    bad = [
        prediction(request_id="").SerializeToString(),
        prediction(request_id="r" * 129).SerializeToString(),
        prediction(model="bad model").SerializeToString(),
        prediction(version="01").SerializeToString(),
        prediction(variant="v" * 129).SerializeToString(),
        prediction(entity_key="k" * 257).SerializeToString(),
        prediction(error="e" * 129).SerializeToString(),
        b"\xff\xff\xff\xff not protobuf",
        twice[:-3],  # cut short
        b"\x0a\x01\xff" + twice,  # a request_id that is not UTF-8, given before the valid one
        twice + b"\xf8\xff\xff\xff\x7f\x00",  # a tag beyond the largest field number
    ]
    for mutate in (
        lambda e: setattr(e.output, "value", float("inf")),
        lambda e: setattr(e.output, "label", "l" * 257),
        lambda e: e.output.probabilities.__setitem__("1", float("nan")),
        lambda e: setattr(e.features["x"], "number", float("inf")),
        lambda e: setattr(e.features["bad name"], "number", 1.0),
        lambda e: setattr(e.features["c"], "category", "c" * 300),
        lambda e: e.ClearField("time"),
        lambda e: setattr(e.time, "seconds", -2_208_988_801),
        lambda e: setattr(e.time, "nanos", -1),
        lambda e: [e.features[f"f{i}"].SetInParent() for i in range(1001)],
    ):
        event = prediction()
        event.features["y"].number = 2.0
        mutate(event)
        bad.append(event.SerializeToString())
    raws = [
        good.SerializeToString(),
        long_category.SerializeToString(),
        *bad,
        prediction(request_id="r2").SerializeToString(),
    ]
    batch = verdicts(raws)
    assert batch == [alone(raw) for raw in raws]
    assert sum(isinstance(value, str) for value in batch) == len(bad)
    rows = decode_many(decode_prediction_rows, raws)
    assert isinstance(rows[0], WirePrediction) and isinstance(rows[-1], WirePrediction)


def test_a_batch_holding_a_string_that_is_not_utf8_is_decoded_record_by_record() -> None:
    not_utf8 = prediction().SerializeToString().replace(b"churn", b"ch\xffrn")
    raws = [prediction().SerializeToString(), not_utf8]
    assert verdicts(raws) == [alone(raw) for raw in raws]
    assert isinstance(alone(not_utf8), str)
