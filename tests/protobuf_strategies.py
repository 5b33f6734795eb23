"""Hypothesis strategies for any protobuf message: random, mutated and plain garbage bodies.

Built from the message descriptor, so every field of every request and event is drawn:
unicode and oversized strings, extreme and non-finite numbers, unknown enum values,
nested messages (to a bounded depth), maps and repeated fields.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

_INT32 = st.integers(-(2**31), 2**31 - 1)
_INT64 = st.integers(-(2**63), 2**63 - 1)
_UINT32 = st.integers(0, 2**32 - 1)
_UINT64 = st.integers(0, 2**64 - 1)
_DOUBLE = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e308, -1e308, 5e-324]),
)
_FLOAT = st.floats(width=32, allow_nan=True, allow_infinity=True)
# Names that pass or nearly pass the naming rules, besides arbitrary unicode and huge text.
_TEXT = st.one_of(
    st.text(max_size=40),
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True),
    st.sampled_from(["", "1", "01", "999", "champion", "churn", "x" * 129]),
    st.text(min_size=1000, max_size=12_000).map(lambda text: text[:12_000]),
)

_SCALARS: dict[int, st.SearchStrategy[Any]] = {
    FieldDescriptor.TYPE_DOUBLE: _DOUBLE,
    FieldDescriptor.TYPE_FLOAT: _FLOAT,
    FieldDescriptor.TYPE_INT32: _INT32,
    FieldDescriptor.TYPE_SINT32: _INT32,
    FieldDescriptor.TYPE_SFIXED32: _INT32,
    FieldDescriptor.TYPE_INT64: _INT64,
    FieldDescriptor.TYPE_SINT64: _INT64,
    FieldDescriptor.TYPE_SFIXED64: _INT64,
    FieldDescriptor.TYPE_UINT32: _UINT32,
    FieldDescriptor.TYPE_FIXED32: _UINT32,
    FieldDescriptor.TYPE_UINT64: _UINT64,
    FieldDescriptor.TYPE_FIXED64: _UINT64,
    FieldDescriptor.TYPE_BOOL: st.booleans(),
    FieldDescriptor.TYPE_STRING: _TEXT,
    FieldDescriptor.TYPE_BYTES: st.binary(max_size=64),
}


def _message_type(field: FieldDescriptor) -> Descriptor:
    assert field.message_type is not None, field.full_name
    return field.message_type


def _value(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return messages(_message_type(field), depth - 1)
    if field.type == FieldDescriptor.TYPE_ENUM:
        assert field.enum_type is not None
        known = [value.number for value in field.enum_type.values]
        return st.one_of(st.sampled_from(known), _INT32)  # proto3 enums are open
    return _SCALARS[field.type]


def _is_map(field: FieldDescriptor) -> bool:
    return field.type == FieldDescriptor.TYPE_MESSAGE and bool(
        _message_type(field).GetOptions().map_entry
    )


def _assign(message: Message, field: FieldDescriptor, value: Any) -> None:
    if _is_map(field):
        target = getattr(message, field.name)
        value_field = _message_type(field).fields_by_name["value"]
        for key, item in value:
            if value_field.type == FieldDescriptor.TYPE_MESSAGE:
                target[key].CopyFrom(item)
            else:
                target[key] = item
    elif _is_repeated(field):
        container = getattr(message, field.name)
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            for item in value:
                container.add().CopyFrom(item)
        else:
            container.extend(value)
    elif field.type == FieldDescriptor.TYPE_MESSAGE:
        getattr(message, field.name).CopyFrom(value)
    else:
        setattr(message, field.name, value)


def _is_repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)


def _field(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if _is_map(field):
        key = _value(_message_type(field).fields_by_name["key"], depth)
        value = _value(_message_type(field).fields_by_name["value"], depth)
        return st.lists(st.tuples(key, value), max_size=4)
    if _is_repeated(field):
        return st.lists(_value(field, depth), max_size=3)
    return _value(field, depth)


def messages(descriptor: Descriptor, depth: int = 3) -> st.SearchStrategy[Message]:
    """Random instances of the message: each field set or not, to a bounded depth."""
    cls = GetMessageClass(descriptor)
    fields = [
        field
        for field in descriptor.fields
        if depth > 0 or field.type != FieldDescriptor.TYPE_MESSAGE
    ]
    if not fields:
        return st.just(cls())

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        message = cls()
        for field in fields:
            if draw(st.booleans()):
                _assign(message, field, draw(_field(field, depth)))
        return message

    return build()


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[bytes]) -> bytes:
    """A valid encoding with bytes flipped, cut or inserted."""
    data = bytearray(draw(base))
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "cut", "insert"]))
        position = draw(st.integers(0, len(data)))
        if action == "flip" and data:
            index = min(position, len(data) - 1)
            data[index] ^= draw(st.integers(1, 255))
        elif action == "cut":
            del data[position:]
        else:
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


def bodies(descriptor: Descriptor) -> st.SearchStrategy[bytes]:
    """What a caller or a producer may send where `descriptor` is expected: random
    messages, mutated encodings of them, and arbitrary bytes."""
    encoded = messages(descriptor).map(lambda message: message.SerializeToString())
    return st.one_of(encoded, mutated(encoded), st.binary(max_size=200))


@st.composite
def variations(draw: st.DrawFn, base: Message) -> Message:
    """`base` (a valid message) with a few of its fields replaced by random values: the
    inputs that pass most checks and probe the last ones."""
    descriptor: Descriptor = base.DESCRIPTOR  # type: ignore[assignment]  # upb and python descriptors are one type at run time
    noise = draw(messages(descriptor, depth=2))
    result = type(base)()
    result.CopyFrom(base)
    for field, _ in noise.ListFields():
        if draw(st.integers(0, 2)) == 0:
            patch = type(base)()
            patch.CopyFrom(noise)
            for other, _ in noise.ListFields():
                if other.name != field.name:
                    patch.ClearField(other.name)
            result.ClearField(field.name)
            result.MergeFrom(patch)
    return result
