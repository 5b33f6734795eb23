"""The bulk wire reader of PredictionEvents gives what upb's message has, for every
encoding protobuf allows: seeded random events (numbers, NaN, categories, empty values,
long names, non-ASCII, negative times, enum numbers this version lacks), repeated keys,
a FeatureValue or a submessage in two pieces, both oneof members in one value, unknown
fields and groups."""

from __future__ import annotations

import datetime as dt
import math
import random
from collections.abc import Mapping

from driftloop.clickhouse.prediction_log import logged_table, prediction_table
from driftloop.kafka.codecs import WirePrediction
from driftloop.kafka.wire import prediction_columns, read_features
from driftloop.v1 import common_pb2, events_pb2

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


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
    b"\x42\x0e\x12\x09" + number(4.0) + b"\x0a\x01d",  # the value before the key
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
    read = prediction_columns(raws)
    assert not read.unread.any()
    for row, event in enumerate(events):
        got_numbers, got_categories = read.numbers[row].as_py(), read.categories[row].as_py()
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


def reference_row(event: events_pb2.PredictionEvent) -> dict[str, object]:
    """A row through the message API, field by field."""
    numbers, categories = upb_maps(event.features)
    output = event.output
    return {
        "request_id": event.request_id,
        "time": event.time.seconds * 1_000_000 + event.time.nanos // 1000,
        "model": event.model,
        "version": event.version,
        "role": {0: "unspecified", 1: "live", 2: "shadow"}.get(event.role, "unspecified"),
        "variant": event.variant,
        "entity_key": event.entity_key,
        "numbers": sorted(numbers.items()),
        "categories": sorted(categories.items()),
        "output_kind": {1: "binary", 2: "multiclass", 3: "regression"}.get(
            output.kind, "unspecified"
        ),
        "output_value": output.value,
        "output_label": output.label,
        "output_probabilities": sorted(output.probabilities.items()),
        "latency_us": event.latency_us,
        "error": event.error,
    }


def test_every_column_is_the_messages_from_messages_or_from_their_bytes() -> None:
    rng = random.Random(9)
    events = random_events(400, seed=5)
    for index, event in enumerate(events):
        event.request_id = f"é{index}"
        event.time.seconds = rng.choice([-2_208_988_800, 0, 1_700_000_000 + index])
        event.time.nanos = rng.choice([0, 999_999_999, 1234])
        # 7, 9: numbers this version does not know
        event.role = common_pb2.Role.ValueType(rng.choice([0, 1, 2, 7]))
        event.variant, event.entity_key, event.error = "stable", f"k{index % 9}", ""
        event.output.kind = common_pb2.OutputKind.ValueType(rng.choice([0, 1, 2, 3, 9]))
        event.output.value = rng.gauss(0, 1)
        event.output.label = rng.choice(["", "yes", "ja"])
        if index % 3:
            event.output.probabilities["yes"] = 0.25
            event.output.probabilities["no"] = 0.75
        event.latency_us = rng.choice([0, 1, 2**32 - 1])
    # time and output each sent in two pieces (they merge): read again from the message
    merged = events[0].SerializeToString() + bytes.fromhex("12020810") + bytes.fromhex("4a020801")
    events.append(events_pb2.PredictionEvent.FromString(merged))
    raws = [event.SerializeToString() for event in events[:-1]] + [merged]
    want = [reference_row(event) for event in events]
    for table in (prediction_table(events), prediction_table(events, raws)):
        rows = table.to_pylist()
        for row in rows:
            row["time"] = (row["time"] - EPOCH) // dt.timedelta(microseconds=1)
            for name in ("numbers", "categories", "output_probabilities"):
                row[name] = sorted(row[name])
        assert repr(rows) == repr(want)  # repr: NaN equals NaN as text


def test_a_consumer_batch_of_rows_and_messages_is_the_table_of_its_messages() -> None:
    events = random_events(60, seed=11)
    for index, event in enumerate(events):
        event.time.seconds = 1_700_000_000 + index
    raws = [event.SerializeToString() for event in events]
    first, second = prediction_columns(raws[:30]), prediction_columns(raws[30:])
    values: list[events_pb2.PredictionEvent | WirePrediction] = [
        *(WirePrediction(first, row, raws[row]) for row in range(10)),
        events[10],  # decoded alone: a message, with its bytes
        *(WirePrediction(first, row, raws[row]) for row in (11, 13, 12)),  # out of order
        *(WirePrediction(second, row - 30, raws[row]) for row in range(30, 45)),
        events[45],  # built by hand: no bytes
        *(WirePrediction(first, row, raws[row]) for row in range(14, 30)),
    ]
    order = [*range(10), 10, 11, 13, 12, *range(30, 46), *range(14, 30)]
    table = logged_table(values, [raws[i] if i == 10 else b"" for i in order])
    want = prediction_table([events[i] for i in order])
    assert repr(table.to_pylist()) == repr(want.to_pylist())  # repr: NaN equals NaN as text
