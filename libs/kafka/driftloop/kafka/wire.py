"""PredictionEvents read straight from their protobuf wire bytes, a whole batch at once:
numpy over the batch, no Python per field or per feature.

Why: upb parses a 400-byte event in about 5 µs, but reading it back through the Python
API costs about 1 µs per feature map entry (`features[name]`, `WhichOneof`, the value)
and about 0.2 µs per field, which made the drift sink's Arrow columns about 20 µs per
record. Here each step of the protobuf wire format (a tag, a length, a value) is one
numpy operation over every field of every event at that step, so the cost per event is
a few array elements.

The wire format (protobuf encoding): a message is a sequence of fields, each a varint tag
(field number << 3 | wire type) and a value: a varint (type 0), 8 bytes (1), a varint
length and that many bytes (2), 4 bytes (5). `map<string, FeatureValue> features = 8` is
a repeated field 8 whose values are entries {key = 1, value = 2}; a FeatureValue is
{number = 1 (double) | category = 2 (string)}. Fields we do not read, and unknown ones,
are skipped. Where the encoding allows more than one spelling of a message, protobuf's
rules apply: a field given twice keeps the last value, a map key given twice keeps the
last entry, and a oneof keeps the member set last; a submessage given twice merges, which
no encoder writes: such an event is marked unread, for the caller to read otherwise.

`read_features` gives every feature entry as the wire has them (a repeated key twice):
the decoder's checks (driftloop.kafka.codecs) run on these, a superset of what upb keeps,
so no bad value escapes them. `prediction_columns` gives the stored columns, protobuf's
last-wins rules applied.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

IntArray = npt.NDArray[np.int64]
FEATURES_FIELD = 8
_MAX_VARINT = 10
# The largest field number protobuf allows (2^29 - 1): upb refuses a tag above it.
_MAX_FIELD_NUMBER = 536_870_911


@dataclass(frozen=True)
class Fields:
    """The fields of a set of messages: per field, the message it is in (`owner`), its
    number, wire type, and the span of its value in the buffer."""

    owner: IntArray
    number: IntArray
    wire_type: IntArray
    start: IntArray
    end: IntArray

    def where(self, mask: npt.NDArray[np.bool_]) -> Fields:
        return Fields(
            self.owner[mask],
            self.number[mask],
            self.wire_type[mask],
            self.start[mask],
            self.end[mask],
        )


@dataclass(frozen=True)
class FeatureEntries:
    """The feature map entries of a batch of events, in wire order (`unread`: the events
    this could not read, whose entries are left out): the event (row) of
    each, its key, whether its value is a number or a category (neither: an empty
    FeatureValue), the number (NaN when not one), the category ('' when not one), and
    whether the entry is spelled as every encoder writes it (`usual`: else read field by
    field, where a key or a category given twice keeps the last, unlike upb's check of
    every occurrence's UTF-8)."""

    rows: int
    unread: npt.NDArray[np.bool_]
    row: IntArray
    key: pa.StringArray
    is_number: npt.NDArray[np.bool_]
    is_category: npt.NDArray[np.bool_]
    number: npt.NDArray[np.float64]
    category: pa.StringArray
    usual: npt.NDArray[np.bool_]


def _varints(buf: npt.NDArray[np.uint8], pos: IntArray) -> tuple[npt.NDArray[np.uint64], IntArray]:
    """The varint at each position: its value and its length in bytes (0 where it runs
    past ten bytes, malformed). Most are one byte: the longer ones are followed alone."""
    first = buf[pos]
    value = (first & 0x7F).astype(np.uint64)
    length = np.ones(pos.size, dtype=np.int64)
    going = np.flatnonzero(first >= 0x80)
    for i in range(1, _MAX_VARINT):
        if not going.size:
            return value, length
        byte = buf[pos[going] + i].astype(np.uint64)
        value[going] |= (byte & np.uint64(0x7F)) << np.uint64(7 * i)
        length[going] = i + 1
        going = going[byte >= 0x80]
    length[going] = 0
    return value, length


def _step(
    buf: npt.NDArray[np.uint8], pos: IntArray, end: IntArray
) -> tuple[IntArray, IntArray, IntArray, IntArray, npt.NDArray[np.bool_]]:
    """The field at each position: its number, wire type, the span of its value (a
    varint's bytes, a fixed width, or a length-delimited payload), and whether it is
    malformed or of a wire type we do not read (groups)."""
    tag, tag_length = _varints(buf, pos)
    after = pos + tag_length
    wire_type = (tag & np.uint64(7)).astype(np.int64)
    number = (tag >> np.uint64(3)).astype(np.int64)
    is_varint, is_bytes = wire_type == 0, wire_type == 2
    counted = np.flatnonzero(is_varint | is_bytes)
    value = np.zeros(pos.size, dtype=np.uint64)
    value_length = np.ones(pos.size, dtype=np.int64)
    value[counted], value_length[counted] = _varints(buf, after[counted])
    start = np.where(is_bytes, after + value_length, after)
    width = np.select(
        [is_varint, wire_type == 1, is_bytes, wire_type == 5],
        [value_length, 8, value.astype(np.int64), 4],
        -1,
    )
    stop = start + width
    bad = (
        (tag_length == 0)
        | (number == 0)
        | (number > _MAX_FIELD_NUMBER)
        | (width < 0)
        | (value_length == 0)
        | (is_bytes & (value >= np.uint64(2**31)))
        | (stop > end)
    )
    return number, wire_type, start, stop, bad


Spans = tuple[IntArray, IntArray, IntArray]


def scan(
    buf: npt.NDArray[np.uint8],
    starts: IntArray,
    ends: IntArray,
    singles: tuple[tuple[int, int], ...],
    repeated: tuple[int, int] | None = None,
) -> tuple[list[Spans], Fields, npt.NDArray[np.bool_]]:
    """One pass over the messages at buf[starts[i]:ends[i]] (`buf` with spare bytes after
    the last one: a varint is read ahead before its end is checked), giving:

    - per field of `singles` ((number, wire type) pairs): in each message the span of
      its last occurrence (start = end = 0 where absent) and how many times it occurs
      (protobuf keeps the last of a field given twice, and merges a message given twice);
    - every occurrence of the `repeated` field, message by message in wire order;
    - which messages this cannot read (malformed, or holding a group, a wire type nothing
      of ours uses): their fields are left out."""
    size = starts.size
    spans = [
        (
            np.zeros(size, dtype=np.int64),
            np.zeros(size, dtype=np.int64),
            np.zeros(size, dtype=np.int64),
        )
        for _ in singles
    ]
    broken = np.zeros(size, dtype=bool)
    owner = np.flatnonzero(starts < ends)
    pos, end = starts[owner], ends[owner]
    found: list[tuple[IntArray, ...]] = []
    while owner.size:
        number, wire_type, start, stop, bad = _step(buf, pos, end)
        broken[owner[bad]] = True
        for (field, kind), (first, last, count) in zip(singles, spans, strict=True):
            mine = (number == field) & (wire_type == kind) & ~bad
            first[owner[mine]] = start[mine]
            last[owner[mine]] = stop[mine]
            count[owner[mine]] += 1
        if repeated is not None:
            keep = (number == repeated[0]) & (wire_type == repeated[1]) & ~bad
            found.append((owner[keep], number[keep], wire_type[keep], start[keep], stop[keep]))
        more = ~bad & (stop < end)
        owner, pos, end = owner[more], stop[more], end[more]
    if not found:
        empty = np.zeros(0, dtype=np.int64)
        return spans, Fields(empty, empty, empty, empty, empty), broken
    columns = [np.concatenate(parts) for parts in zip(*found, strict=True)]
    # Message order, then wire order within each message (a stable sort on the owner).
    order = np.argsort(columns[0], kind="stable")
    fields = Fields(*(column[order] for column in columns))
    return spans, (fields.where(~broken[fields.owner]) if broken.any() else fields), broken


def _strings(buf: npt.NDArray[np.uint8], start: IntArray, end: IntArray) -> pa.StringArray:
    """buf[start[i]:end[i]] of each i as one Arrow string array (validated UTF-8)."""
    lengths = end - start
    offsets = np.zeros(lengths.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    total = int(offsets[-1])
    index = np.repeat(start - offsets[:-1], lengths) + np.arange(total, dtype=np.int64)
    data = buf[index]
    array = pa.LargeStringArray.from_buffers(
        lengths.size, pa.py_buffer(offsets), pa.py_buffer(data.tobytes())
    )
    array.validate(full=True)
    return array.cast(pa.string())


def _last(owner: IntArray) -> npt.NDArray[np.bool_]:
    """Of fields sorted by owner, the last one of each owner."""
    last = np.ones(owner.size, dtype=bool)
    last[:-1] = owner[:-1] != owner[1:]
    return last


def _buffer(raws: Sequence[bytes]) -> tuple[npt.NDArray[np.uint8], IntArray, IntArray]:
    lengths = np.fromiter((len(raw) for raw in raws), dtype=np.int64, count=len(raws))
    ends = np.cumsum(lengths)
    buf = np.frombuffer(b"".join(raws) + bytes(2 * _MAX_VARINT + 1), dtype=np.uint8)
    return buf, ends - lengths, ends


def read_features(raws: Sequence[bytes]) -> FeatureEntries:
    """Every feature map entry of the events as the wire has them (a key given twice is
    there twice); within an entry, protobuf's rules: its last key, and of its value the
    oneof member set last, each member's last value. An entry whose value is given twice
    (the two merge) marks its event unread: no encoder writes that."""
    buf, starts, ends = _buffer(raws)
    _, entries, unread = scan(buf, starts, ends, (), (FEATURES_FIELD, 2))
    return _feature_entries(buf, entries, unread)


def _feature_entries(
    buf: npt.NDArray[np.uint8], entries: Fields, unread: npt.NDArray[np.bool_]
) -> FeatureEntries:
    size = entries.owner.size
    key_start, key_end = np.zeros(size, dtype=np.int64), np.zeros(size, dtype=np.int64)
    is_number, is_category = np.zeros(size, dtype=bool), np.zeros(size, dtype=bool)
    number_at = np.zeros(size, dtype=np.int64)
    category_start = np.zeros(size, dtype=np.int64)
    category_end = np.zeros(size, dtype=np.int64)
    usual = _usual_entries(buf, entries.start, entries.end)
    # The usual spelling, read at fixed places.
    at = entries.start[usual]
    key_start[usual] = at + 2
    key_end[usual] = at + 2 + buf[at + 1]
    value = key_end[usual] + 2
    length = entries.end[usual] - value
    kind = buf[np.minimum(value, buf.size - 1)]
    is_number[usual] = (length == 9) & (kind == 0x09)
    is_category[usual] = (length >= 2) & (kind == 0x12)
    number_at[usual] = value + 1
    category_start[usual] = value + 2
    category_end[usual] = np.where(is_category[usual], entries.end[usual], value + 2)
    # Any other spelling: field by field.
    other = np.flatnonzero(~usual)
    if other.size:
        (keys, values), _, broken = scan(
            buf, entries.start[other], entries.end[other], ((1, 2), (2, 2))
        )
        unread[entries.owner[other[broken | (values[2] > 1)]]] = True
        (numbers, categories), _, broken = scan(buf, values[0], values[1], ((1, 1), (2, 2)))
        unread[entries.owner[other[broken]]] = True
        has_number, has_category = numbers[2] > 0, categories[2] > 0
        number_wins = has_number & (~has_category | (numbers[0] > categories[0]))
        key_start[other], key_end[other] = keys[0], keys[1]
        is_number[other] = number_wins
        is_category[other] = has_category & ~number_wins
        number_at[other] = np.where(has_number, numbers[0], -1)
        category_start[other], category_end[other] = categories[0], categories[1]
    number = np.full(size, np.nan)
    read = number_at >= 0
    read[usual] = is_number[usual]
    number[read] = _doubles(buf, number_at[read])
    return FeatureEntries(
        unread.size,
        unread,
        entries.owner,
        _strings(buf, key_start, key_end),
        is_number,
        is_category,
        number,
        _strings(buf, category_start, category_end),
        usual,
    )


def _usual_entries(
    buf: npt.NDArray[np.uint8], start: IntArray, end: IntArray
) -> npt.NDArray[np.bool_]:
    """Which map entries are spelled as every encoder writes them: key (tag 0x0a, a
    one-byte length), then value (tag 0x12, a one-byte length) ending the entry, holding
    nothing, a number (tag 0x09 and 8 bytes) or a category (tag 0x12, a one-byte length)
    ending the value. These are read at fixed places, a handful of array operations for
    all of them; the rest field by field."""
    last = buf.size - 1

    def byte(at: IntArray) -> npt.NDArray[np.uint8]:
        return buf[np.minimum(at, last)]

    key_length = byte(start + 1).astype(np.int64)
    value_tag = start + 2 + key_length
    value_length = byte(value_tag + 1).astype(np.int64)
    value = value_tag + 2
    inner = byte(value)
    category_length = byte(value + 1).astype(np.int64)
    usual: npt.NDArray[np.bool_] = (
        (end - start >= 4)
        & (byte(start) == 0x0A)
        & (key_length < 0x80)
        & (byte(value_tag) == 0x12)
        & (value_length < 0x80)
        & (value + value_length == end)
        & (
            (value_length == 0)
            | ((value_length == 9) & (inner == 0x09))
            | (
                (value_length >= 2)
                & (inner == 0x12)
                & (category_length < 0x80)
                & (value + 2 + category_length == end)
            )
        )
    )
    return usual


def _doubles(buf: npt.NDArray[np.uint8], start: IntArray) -> npt.NDArray[np.float64]:
    """The little-endian doubles at each position: rows of an 8-byte sliding view of the
    buffer, gathered in one step."""
    rows = np.lib.stride_tricks.as_strided(buf, shape=(buf.size - 7, 8), strides=(1, 1))
    return rows[start].view("<f8").reshape(-1).astype(np.float64, copy=False)


def _integers(buf: npt.NDArray[np.uint8], spans: Spans) -> IntArray:
    """The varint fields' values as int64 (0 where absent): a negative int32 or int64 is
    its 64-bit two's complement on the wire."""
    start, _, count = spans
    values = np.zeros(start.size, dtype=np.int64)
    present = count > 0
    values[present] = _varints(buf, start[present])[0].view(np.int64)
    return values


@dataclass(frozen=True)
class PredictionColumns:
    """The columns of a batch of PredictionEvents (`unread`: the events this could not
    read, whose columns hold defaults): strings as Arrow arrays, enums as their numbers,
    `time_us` microseconds since the epoch, the maps as Map arrays.

    For a decoder's checks: whether `time` is set and its `seconds` and `nanos`; every
    feature entry as the wire has them (`features`); `irregular`, the events spelled
    otherwise than every encoder writes them (a string field given twice, a feature entry
    read field by field), whose earlier strings upb checks and this does not read; and
    `probabilities`, how many output probabilities each event's wire has."""

    unread: npt.NDArray[np.bool_]
    request_id: pa.StringArray
    time_us: IntArray
    model: pa.StringArray
    version: pa.StringArray
    role: IntArray
    variant: pa.StringArray
    entity_key: pa.StringArray
    numbers: pa.MapArray
    categories: pa.MapArray
    output_kind: IntArray
    output_value: npt.NDArray[np.float64]
    output_label: pa.StringArray
    output_probabilities: pa.MapArray
    latency_us: IntArray
    error: pa.StringArray
    time_set: npt.NDArray[np.bool_]
    seconds: IntArray
    nanos: IntArray
    features: FeatureEntries
    irregular: npt.NDArray[np.bool_]
    probabilities: IntArray


# PredictionEvent's fields (events.proto) with their wire types.
_EVENT_FIELDS = ((1, 2), (2, 2), (3, 2), (4, 2), (5, 0), (6, 2), (7, 2), (9, 2), (10, 0), (11, 2))
# Output's kind, value and label; its probabilities (map<string, double>) are field 4.
_OUTPUT_FIELDS = ((1, 0), (2, 1), (3, 2))


def prediction_columns(raws: Sequence[bytes]) -> PredictionColumns:
    """The stored columns of the events, by protobuf's rules: a field given twice keeps
    the last, a map key given twice its last entry (in that entry's place: upb keeps a map
    in a hash table, so no order of the keys is the event's own). A submessage (time,
    output) given twice merges: its event is marked unread, as no encoder writes that."""
    buf, starts, ends = _buffer(raws)
    fields, entries, unread = scan(buf, starts, ends, _EVENT_FIELDS, (FEATURES_FIELD, 2))
    (request_id, time, model, version, role, variant, entity_key, output, latency, error) = fields
    unread[(time[2] > 1) | (output[2] > 1)] = True
    (seconds, nanos), _, broken = scan(buf, time[0], time[1], ((1, 0), (2, 0)))
    unread |= broken
    (kind, value, label), probabilities, broken = scan(
        buf, output[0], output[1], _OUTPUT_FIELDS, (4, 2)
    )
    unread |= broken
    (keys, values), _, broken = scan(buf, probabilities.start, probabilities.end, ((1, 2), (2, 1)))
    unread[probabilities.owner[broken]] = True
    output_value = np.zeros(starts.size)
    output_value[value[2] > 0] = _doubles(buf, value[0][value[2] > 0])
    probability = np.zeros(probabilities.owner.size)
    probability[values[2] > 0] = _doubles(buf, values[0][values[2] > 0])
    features = _feature_entries(buf, entries, unread)
    # Strings given twice (upb checks the UTF-8 of each; only the last is read here).
    irregular = np.zeros(starts.size, dtype=bool)
    for spans in (request_id, model, version, variant, entity_key, error, label):
        irregular |= spans[2] > 1
    irregular[features.row[~features.usual]] = True
    seconds_at, nanos_at = _integers(buf, seconds), _integers(buf, nanos).astype(np.int32)
    keep = _latest_per_key(features.row, features.key)
    numbers = keep & features.is_number
    categories = keep & features.is_category
    probability_keys = _strings(buf, keys[0], keys[1])
    latest = _latest_per_key(probabilities.owner, probability_keys)
    return PredictionColumns(
        unread=unread,
        request_id=_strings(buf, request_id[0], request_id[1]),
        time_us=seconds_at * 1_000_000 + nanos_at // 1000,
        model=_strings(buf, model[0], model[1]),
        version=_strings(buf, version[0], version[1]),
        role=_integers(buf, role).astype(np.int32).astype(np.int64),
        variant=_strings(buf, variant[0], variant[1]),
        entity_key=_strings(buf, entity_key[0], entity_key[1]),
        numbers=_map(
            starts.size,
            features.row[numbers],
            features.key.filter(numbers),
            pa.array(features.number[numbers], pa.float64()),
        ),
        categories=_map(
            starts.size,
            features.row[categories],
            features.key.filter(categories),
            features.category.filter(categories),
        ),
        output_kind=_integers(buf, kind).astype(np.int32).astype(np.int64),
        output_value=output_value,
        output_label=_strings(buf, label[0], label[1]),
        output_probabilities=_map(
            starts.size,
            probabilities.owner[latest],
            probability_keys.filter(latest),
            pa.array(probability[latest], pa.float64()),
        ),
        latency_us=_integers(buf, latency).astype(np.uint32).astype(np.int64),
        error=_strings(buf, error[0], error[1]),
        time_set=time[2] > 0,
        seconds=seconds_at,
        nanos=nanos_at.astype(np.int64),
        features=features,
        irregular=irregular,
        probabilities=np.bincount(probabilities.owner, minlength=starts.size),
    )


def _latest_per_key(row: IntArray, key: pa.StringArray) -> npt.NDArray[np.bool_]:
    """Per map entry: whether it is the last of its row with its key (a repeated map key
    keeps its last entry)."""
    if row.size == 0:
        return np.zeros(0, dtype=bool)
    codes = pc.dictionary_encode(key).indices.to_numpy(zero_copy_only=False)
    pair = row * (int(codes.max()) + 1) + codes
    # The last occurrence of each (row, key): the first in reversed order.
    _, first_reversed = np.unique(pair[::-1], return_index=True)
    keep = np.zeros(pair.size, dtype=bool)
    keep[pair.size - 1 - first_reversed] = True
    return keep


def _map(rows: int, row: IntArray, keys: pa.Array, values: pa.Array) -> pa.MapArray:
    """A Map column of `rows` rows from its entries, sorted by row."""
    offsets = np.zeros(rows + 1, dtype=np.int32)
    np.cumsum(np.bincount(row, minlength=rows), out=offsets[1:])
    return pa.MapArray.from_arrays(pa.array(offsets, pa.int32()), keys, values)
