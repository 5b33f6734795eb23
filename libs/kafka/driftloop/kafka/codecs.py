"""Decoding Kafka values into validated protobuf messages.

A decoder returns a message or raises DecodeError with a reason; the consumer sends the
original bytes and that reason to the dead-letter topic. Labels are accepted as protobuf
or as JSON with the same field names, so a producer in any language can publish them.

Decoding also checks every value against what the store accepts, so a record that parses
but could never be stored is dead-lettered here, with a reason, instead of failing its
whole batch at insert: times inside ClickHouse's DateTime64 range (1900-01-01 to
2299-12-31) with valid nanoseconds, names by the naming rules, bounded sizes (ids, keys,
categories, feature counts), finite numbers where a number must be one (a feature may be
NaN, the model's schema allows that, but never infinite; outputs and label values finite).

Predictions come in batches of tens of thousands, so `decode_prediction` also decodes a
batch (`decode_many`): each event is parsed by upb and its own fields checked one by one,
but the checks of its feature map run over the whole batch's maps at once, read from the
wire bytes (driftloop.kafka.wire): about 1 µs per feature of Python otherwise. Those
checks only pick out the records to look at closely: any record they or a field check
find fault with is decoded again alone, so its verdict and reason are the one-record
decoder's, word for word.

The drift sink needs no message at all, only the batch's columns, so its consumer takes
`decode_prediction_rows`: the same one-record decoder, but a batch is read once from its
wire bytes (`wire.prediction_columns`) and checked on those columns, and a record that
passes stays a `WirePrediction` (its row of the batch's columns and its bytes): no upb
parse. A record the column checks find fault with, or whose encoding is not the one every
encoder writes, is decoded alone as above (a message, or its DecodeError word for word);
a batch holding a string that is not UTF-8 is decoded as `decode_prediction.many` does.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Sequence
from typing import NamedTuple, Protocol, TypeVar, runtime_checkable

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from google.protobuf import json_format
from google.protobuf.message import DecodeError as ProtobufDecodeError
from google.protobuf.message import Message

from driftloop.kafka.wire import (
    FeatureEntries,
    PredictionColumns,
    prediction_columns,
    read_features,
)
from driftloop.kit.errors import shown
from driftloop.kit.names import (
    MAX_FEATURES,
    MAX_KEY_CHARS,
    MAX_REQUEST_ID,
    MAX_SHORT_CHARS,
    NAME,
    VERSION_NUMBER,
)
from driftloop.kit.times import MAX_SECONDS, MIN_SECONDS, timestamp_problem
from driftloop.v1 import events_pb2

M = TypeVar("M", bound=Message)
Decoder = Callable[[bytes], Message]


class DecodeError(ValueError):
    """A message that cannot be accepted; the text says why (it lands in dead-letter)."""


class WirePrediction(NamedTuple):
    """A PredictionEvent that passed every check of the one-record decoder, not parsed:
    its `row` of its batch's `columns` (read once from the wire, shared by the batch's
    records) and its bytes. A tuple: tens of thousands are made per batch."""

    columns: PredictionColumns
    row: int
    raw: bytes

    def message(self) -> events_pb2.PredictionEvent:
        """The event as a message (what the one-record decoder gives for it)."""
        return events_pb2.PredictionEvent.FromString(self.raw)


# What a decoder gives for a value it accepts.
Decoded = Message | WirePrediction


@runtime_checkable
class BatchDecoder(Protocol):
    """A decoder that also takes a batch at once, with the same verdicts."""

    def __call__(self, raw: bytes) -> Message: ...

    def many(self, raws: Sequence[bytes]) -> list[Decoded | DecodeError]: ...


def decode_many(decode: Decoder, raws: Sequence[bytes]) -> list[Decoded | DecodeError]:
    """Each value decoded, or the DecodeError saying why it cannot be (in order)."""
    if isinstance(decode, BatchDecoder):
        return decode.many(raws)
    decoded: list[Decoded | DecodeError] = []
    for raw in raws:
        try:
            decoded.append(decode(raw))
        except DecodeError as error:
            decoded.append(error)
    return decoded


def parse_binary(cls: type[M], raw: bytes) -> M:
    message = cls()
    try:
        message.ParseFromString(raw)
    except (ProtobufDecodeError, RuntimeError) as error:
        raise DecodeError(f"not a valid {cls.DESCRIPTOR.full_name}: {error}") from None
    return message


def parse_json(cls: type[M], raw: bytes) -> M:
    message = cls()
    try:
        json_format.Parse(raw.decode("utf-8"), message)
    except (json_format.ParseError, UnicodeDecodeError) as error:
        raise DecodeError(f"not a valid JSON {cls.DESCRIPTOR.full_name}: {error}") from None
    return message


def _require_request_id(request_id: str) -> None:
    if not request_id:
        raise DecodeError("request_id is empty")
    if len(request_id) > MAX_REQUEST_ID:
        raise DecodeError(f"request_id is longer than {MAX_REQUEST_ID} characters")


def _require_time(field: str, seconds: int, nanos: int) -> None:
    problem = timestamp_problem(seconds, nanos)
    if problem is not None:
        raise DecodeError(f"{field}: {problem}")


def _require_length(field: str, value: str, limit: int) -> None:
    if len(value) > limit:
        raise DecodeError(f"{field} is {len(value):,} characters, more than {limit}")


def _require_finite(field: str, value: float) -> None:
    if not math.isfinite(value):
        raise DecodeError(f"{field} is {value}, not a finite number")


def _decode_prediction(raw: bytes) -> events_pb2.PredictionEvent:
    event = parse_binary(events_pb2.PredictionEvent, raw)
    _require_request_id(event.request_id)
    if not NAME.fullmatch(event.model):
        raise DecodeError(f"model {shown(event.model)} is not a valid model name")
    if not VERSION_NUMBER.fullmatch(event.version):
        raise DecodeError(f"version {shown(event.version)} is not a version number")
    if not event.HasField("time"):
        raise DecodeError("time is not set")
    _require_time("time", event.time.seconds, event.time.nanos)
    _require_length("variant", event.variant, MAX_SHORT_CHARS)
    _require_length("entity_key", event.entity_key, MAX_KEY_CHARS)
    _require_length("error", event.error, MAX_SHORT_CHARS)
    if len(event.features) > MAX_FEATURES:
        raise DecodeError(f"{len(event.features):,} features, more than {MAX_FEATURES}")
    for name in event.features:
        if not NAME.fullmatch(name):
            raise DecodeError(f"feature name {shown(name)} is not a valid name")
        value = event.features[name]
        if value.WhichOneof("kind") == "number" and math.isinf(value.number):
            raise DecodeError(f"features.{name} is {value.number}, infinity is not storable")
        _require_length(f"features.{name}", value.category, MAX_KEY_CHARS)
    output = event.output
    _require_finite("output.value", output.value)
    _require_length("output.label", output.label, MAX_KEY_CHARS)
    if len(output.probabilities) > MAX_FEATURES:
        raise DecodeError(f"{len(output.probabilities):,} output probabilities, too many")
    for label in output.probabilities:
        _require_length("output.probabilities key", label, MAX_KEY_CHARS)
        _require_finite(f"output.probabilities[{shown(label)}]", output.probabilities[label])
    return event


class _PredictionDecoder:
    """`decode_prediction(raw)`: one record; `decode_prediction.many(raws)`: a batch."""

    def __init__(self) -> None:
        # Names already judged (model, version and feature names repeat in every record).
        self._names: dict[str, bool] = {}
        self._versions: dict[str, bool] = {}

    def __call__(self, raw: bytes) -> events_pb2.PredictionEvent:
        return _decode_prediction(raw)

    def many(self, raws: Sequence[bytes]) -> list[Decoded | DecodeError]:
        decoded: list[Decoded | DecodeError] = []
        suspect: set[int] = set()
        parsed: list[int] = []
        for index, raw in enumerate(raws):
            event = events_pb2.PredictionEvent()
            try:
                event.ParseFromString(raw)
            except (ProtobufDecodeError, RuntimeError):
                decoded.append(DecodeError())  # decoded alone below, for its reason
                suspect.add(index)
                continue
            decoded.append(event)
            parsed.append(index)
            if not self._fields_pass(event):
                suspect.add(index)
        # upb has checked the strings' UTF-8 of the parsed ones, which the reader needs.
        entries = read_features([raws[index] for index in parsed])
        failing = np.flatnonzero(entries.unread | self._features_fail(entries))
        suspect.update(parsed[row] for row in failing.tolist())
        return _alone(decoded, raws, sorted(suspect))

    def _name(self, name: str) -> bool:
        return _matches(self._names, NAME, name)

    def _version(self, version: str) -> bool:
        return _matches(self._versions, VERSION_NUMBER, version)

    def _fields_pass(self, event: events_pb2.PredictionEvent) -> bool:
        """Whether every check of `_decode_prediction` but the feature map's passes."""
        output = event.output
        return (
            0 < len(event.request_id) <= MAX_REQUEST_ID
            and self._name(event.model)
            and self._version(event.version)
            and event.HasField("time")
            and timestamp_problem(event.time.seconds, event.time.nanos) is None
            and len(event.variant) <= MAX_SHORT_CHARS
            and len(event.entity_key) <= MAX_KEY_CHARS
            and len(event.error) <= MAX_SHORT_CHARS
            and math.isfinite(output.value)
            and len(output.label) <= MAX_KEY_CHARS
            and not output.probabilities  # rare: checked alone
        )

    def _features_fail(self, entries: FeatureEntries) -> npt.NDArray[np.bool_]:
        """The records whose feature map may fail a check (a superset: every entry the
        wire has is checked, of which upb keeps a subset)."""
        failing = np.bincount(entries.row, minlength=entries.rows) > MAX_FEATURES
        names = pc.unique(entries.key).to_pylist()
        invalid = [name for name in names if not self._name(name)]
        bad = np.isinf(entries.number) & entries.is_number
        if invalid:
            bad |= pc.is_in(entries.key, pa.array(invalid, pa.string())).to_numpy(
                zero_copy_only=False
            )
        bad |= pc.utf8_length(entries.category).to_numpy(zero_copy_only=False) > MAX_KEY_CHARS
        failing[entries.row[bad]] = True
        return failing

    def _columns_fail(self, read: PredictionColumns) -> npt.NDArray[np.bool_]:
        """The records some check of `_decode_prediction` may refuse (a superset), read
        from the batch's columns: every check of `_fields_pass` and `_features_fail`, plus
        what the reader cannot vouch for as upb would (unread, irregular)."""
        failing = read.unread | read.irregular | ~read.time_set | (read.probabilities > 0)
        failing |= ~np.isfinite(read.output_value)
        failing |= (read.seconds < MIN_SECONDS) | (read.seconds > MAX_SECONDS)
        failing |= (read.nanos < 0) | (read.nanos > 999_999_999)
        for column, least, most in (
            (read.request_id, 1, MAX_REQUEST_ID),
            (read.variant, 0, MAX_SHORT_CHARS),
            (read.entity_key, 0, MAX_KEY_CHARS),
            (read.error, 0, MAX_SHORT_CHARS),
            (read.output_label, 0, MAX_KEY_CHARS),
        ):
            length = pc.utf8_length(column).to_numpy(zero_copy_only=False)
            failing |= (length < least) | (length > most)
        for column, valid in ((read.model, self._name), (read.version, self._version)):
            invalid = [text for text in pc.unique(column).to_pylist() if not valid(text)]
            if invalid:
                failing |= pc.is_in(column, pa.array(invalid, pa.string())).to_numpy(
                    zero_copy_only=False
                )
        return failing | self._features_fail(read.features)


class _PredictionRowDecoder(_PredictionDecoder):
    """`decode_prediction_rows(raw)`: one record, a message; `.many(raws)`: a batch whose
    records that pass stay WirePredictions (module docstring)."""

    def many(self, raws: Sequence[bytes]) -> list[Decoded | DecodeError]:
        try:
            read = prediction_columns(raws)
        except pa.ArrowInvalid:  # a string that is not UTF-8: upb says which record
            return super().many(raws)
        # tuple.__new__ over zipped fields: no Python call per record (WirePrediction's
        # own __new__ is one, about a microsecond).
        rows = zip(itertools.repeat(read), range(len(raws)), raws, strict=False)
        decoded: list[Decoded | DecodeError] = list(
            itertools.starmap(
                tuple.__new__, zip(itertools.repeat(WirePrediction), rows, strict=False)
            )
        )
        return _alone(decoded, raws, np.flatnonzero(self._columns_fail(read)).tolist())


def _alone(
    decoded: list[Decoded | DecodeError], raws: Sequence[bytes], indices: Sequence[int]
) -> list[Decoded | DecodeError]:
    """`decoded` with the records at `indices` decoded alone (a message or its error)."""
    for index in indices:
        try:
            decoded[index] = _decode_prediction(raws[index])
        except DecodeError as error:
            decoded[index] = error
    return decoded


_NAME_CACHE = 10_000
decode_prediction = _PredictionDecoder()
decode_prediction_rows = _PredictionRowDecoder()


def _matches(judged: dict[str, bool], pattern: re.Pattern[str], text: str) -> bool:
    """Whether `pattern` matches all of `text`, remembered in `judged` (bounded)."""
    valid = judged.get(text)
    if valid is None:
        valid = judged[text] = pattern.fullmatch(text) is not None
        if len(judged) > _NAME_CACHE:
            judged.clear()
    return valid


def decode_label(raw: bytes) -> events_pb2.LabelEvent:
    """A label as protobuf, or as JSON when the value starts with '{'."""
    if raw.lstrip()[:1] == b"{":
        event = parse_json(events_pb2.LabelEvent, raw)
    else:
        event = parse_binary(events_pb2.LabelEvent, raw)
    _require_request_id(event.request_id)
    truth = event.WhichOneof("truth")
    if truth is None:
        raise DecodeError("neither label nor value is set")
    if truth == "value":
        _require_finite("value", event.value)
    _require_length("label", event.label, MAX_KEY_CHARS)
    _require_length("source", event.source, MAX_SHORT_CHARS)
    _require_time("time", event.time.seconds, event.time.nanos)
    return event


def decode_model_event(raw: bytes) -> events_pb2.ModelEvent:
    event = parse_binary(events_pb2.ModelEvent, raw)
    if not NAME.fullmatch(event.model):
        raise DecodeError(f"model {shown(event.model)} is not a valid model name")
    if event.kind == events_pb2.MODEL_EVENT_KIND_UNSPECIFIED:
        raise DecodeError("kind is not set")
    return event


def decode_drift_alert(raw: bytes) -> events_pb2.DriftAlert:
    alert = parse_binary(events_pb2.DriftAlert, raw)
    if not NAME.fullmatch(alert.model):
        raise DecodeError(f"model {shown(alert.model)} is not a valid model name")
    if not alert.alert_id:
        raise DecodeError("alert_id is empty")
    _require_length("alert_id", alert.alert_id, MAX_SHORT_CHARS)
    return alert


def decode_shadow_request(raw: bytes) -> events_pb2.ShadowRequest:
    request = parse_binary(events_pb2.ShadowRequest, raw)
    _require_request_id(request.request_id)
    if not NAME.fullmatch(request.model):
        raise DecodeError(f"model {shown(request.model)} is not a valid model name")
    if not request.HasField("time"):
        raise DecodeError("time is not set")
    _require_time("time", request.time.seconds, request.time.nanos)
    if not request.shadow_versions:
        raise DecodeError("no shadow_versions")
    for version in request.shadow_versions:
        if not VERSION_NUMBER.fullmatch(version):
            raise DecodeError(f"shadow version {shown(version)} is not a version number")
    if len(request.features) > MAX_FEATURES:
        raise DecodeError(f"{len(request.features):,} features, more than {MAX_FEATURES}")
    _require_length("entity_key", request.entity_key, MAX_KEY_CHARS)
    return request


def log_decoders(predictions_topic: str, labels_topic: str) -> dict[str, Decoder]:
    """The decoder of each prediction-log topic, as the drift sink takes them (its
    predictions as WirePredictions, the sink needing only their columns)."""
    return {predictions_topic: decode_prediction_rows, labels_topic: decode_label}
