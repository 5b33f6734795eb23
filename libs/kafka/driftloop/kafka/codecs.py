"""Decoding Kafka values into validated protobuf messages.

A decoder returns a message or raises DecodeError with a reason; the consumer sends the
original bytes and that reason to the dead-letter topic. Labels are accepted as protobuf
or as JSON with the same field names, so a producer in any language can publish them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

from google.protobuf import json_format
from google.protobuf.message import DecodeError as ProtobufDecodeError
from google.protobuf.message import Message

from driftloop.v1 import events_pb2

M = TypeVar("M", bound=Message)
Decoder = Callable[[bytes], Message]

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MAX_REQUEST_ID = 128


class DecodeError(ValueError):
    """A message that cannot be accepted; the text says why (it lands in dead-letter)."""


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


def decode_prediction(raw: bytes) -> events_pb2.PredictionEvent:
    event = parse_binary(events_pb2.PredictionEvent, raw)
    _require_request_id(event.request_id)
    if not NAME.fullmatch(event.model):
        raise DecodeError(f"model {event.model!r} is not a valid model name")
    if not NAME.fullmatch(event.version):
        raise DecodeError(f"version {event.version!r} is not a valid version")
    if not event.HasField("time"):
        raise DecodeError("time is not set")
    return event


def decode_label(raw: bytes) -> events_pb2.LabelEvent:
    """A label as protobuf, or as JSON when the value starts with '{'."""
    if raw.lstrip()[:1] == b"{":
        event = parse_json(events_pb2.LabelEvent, raw)
    else:
        event = parse_binary(events_pb2.LabelEvent, raw)
    _require_request_id(event.request_id)
    if event.WhichOneof("truth") is None:
        raise DecodeError("neither label nor value is set")
    return event


def decode_model_event(raw: bytes) -> events_pb2.ModelEvent:
    event = parse_binary(events_pb2.ModelEvent, raw)
    if not NAME.fullmatch(event.model):
        raise DecodeError(f"model {event.model!r} is not a valid model name")
    return event
