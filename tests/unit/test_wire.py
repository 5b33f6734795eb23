"""The bulk wire reader of PredictionEvent feature maps gives what upb's message has, for
every encoding protobuf allows: seeded random events (numbers, NaN, categories, empty
values, long names, non-ASCII), repeated keys, a FeatureValue in two pieces, both oneof
members in one value, unknown fields and groups."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping

from driftloop.clickhouse.prediction_log import prediction_table
from driftloop.kafka.wire import feature_maps, read_features
from driftloop.v1 import common_pb2, events_pb2


def upb_maps(
    features: Mapping[str, common_pb2.FeatureValue],
) -> tuple[dict[str, float], dict[str, str]]:
    """The reference: the feature map through the message API."""
    numbers: dict[str, float] = {}
    categories: dict[str, str] = {}
    for name in features:
        value = features[name]
        kind = value.WhichOneof("kind")
        if kind == "number":
            numbers[name] = value.number
        elif kind == "category":
            categories[name] = value.category
    return numbers, categories


def random_events(count: int, seed: int) -> list[events_pb2.PredictionEvent]:
    rng = random.Random(seed)
    events = []
    for i in range(count):
        event = events_pb2.PredictionEvent(request_id=f"r{i}", model="m", version="1")
        for j in range(rng.randint(0, 25)):
            name = rng.choice(["a", "x1", "ü", "long_name_" * rng.randint(1, 20)]) + str(j % 7)
            draw = rng.random()
            if draw < 0.7:
                event.features[name].number = rng.choice(
                    [rng.gauss(0, 1), math.nan, 0.0, -0.0, 1e300, -5e-324]
                )
            elif draw < 0.9:
                event.features[name].category = rng.choice(["", "x", "é" * 300])
            else:
                event.features[name].SetInParent()  # a value with neither member
        events.append(event)
    return events


def entry(key: bytes, value: bytes) -> bytes:
    body = b"\x0a" + bytes([len(key)]) + key + b"\x12" + bytes([len(value)]) + value
    return b"\x42" + bytes([len(body)]) + body


def number(value: float) -> bytes:
    return common_pb2.FeatureValue(number=value).SerializeToString()


def category(value: str) -> bytes:
    return common_pb2.FeatureValue(category=value).SerializeToString()


ODD = [
    entry(b"a", number(1.0)) + entry(b"a", category("z")),  # a repeated key: the last
    entry(b"a", category("z")) + entry(b"b", number(2.0)) + entry(b"a", number(3.0)),
    entry(b"a", number(1.0) + category("q")),  # both members: the last set
    entry(b"b", category("q") + number(2.5)) + b"\x98\x06\x05",  # and an unknown field
    b"\x42\x00",  # an empty entry: key '', no value
    b"\x42\x05\x12\x03\x98\x06\x05" + entry(b"c", number(-1.0)),  # a value: unknown field
]


def same(
    got: tuple[dict[str, float], dict[str, str]], want: tuple[dict[str, float], dict[str, str]]
) -> bool:
    (got_numbers, got_categories), (numbers, categories) = got, want
    return (
        got_numbers.keys() == numbers.keys()
        and all(
            got_numbers[k] == v or (math.isnan(got_numbers[k]) and math.isnan(v))
            for k, v in numbers.items()
        )
        and got_categories == categories
    )


def test_the_maps_are_upbs_for_any_encoding() -> None:
    events = random_events(1500, seed=3)
    raws = [event.SerializeToString() for event in events] + ODD
    events += [events_pb2.PredictionEvent.FromString(raw) for raw in ODD]
    numbers, categories, unread = feature_maps(raws)
    assert not unread.any()
    for row, event in enumerate(events):
        got_numbers, got_categories = numbers[row].as_py(), categories[row].as_py()
        assert len(dict(got_numbers)) == len(got_numbers)  # each key once
        assert same((dict(got_numbers), dict(got_categories)), upb_maps(event.features)), row


def test_what_it_cannot_read_is_marked_and_the_table_is_still_exact() -> None:
    # A FeatureValue given twice merges (number, then an empty piece): flagged, not guessed.
    body = b"\x0a\x01a\x12\x09" + number(1.5) + b"\x12\x00"
    merged = b"\x42" + bytes([len(body)]) + body
    group = entry(b"g", number(2.0)) + b"\x0b\x10\x01\x0c"  # a group (field 1) in it
    raws = [merged, group, b"\x0a\x01r"]
    assert read_features(raws).unread.tolist() == [True, True, False]
    events = [events_pb2.PredictionEvent.FromString(raw) for raw in raws]
    table = prediction_table(events, raws)
    for row, event in enumerate(events):
        got = table.column("numbers")[row].as_py(), table.column("categories")[row].as_py()
        assert same((dict(got[0]), dict(got[1])), upb_maps(event.features))


def test_the_table_from_messages_equals_the_table_from_their_bytes() -> None:
    events = random_events(300, seed=5)
    raws = [event.SerializeToString() for event in events]
    # repr: NaN features compare equal as text
    assert repr(prediction_table(events).to_pylist()) == repr(
        prediction_table(events, raws).to_pylist()
    )
