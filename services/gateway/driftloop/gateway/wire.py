"""The request's features written into the prediction log and the shadow mirror as bytes.

Copying a 20-feature map from one message into another (`features.MergeFrom`) costs about
11 us in upb's Python binding, once per event and once more per mirrored request. A map
field is, on the wire, its entries one after another, each a length-delimited field of the
map's number; a Row holds nothing but its `features` map (field 1). So the row's own
encoding with each entry's tag rewritten is the same map as another message's field, and
appending it to that message's encoding merges it in (protobuf parses concatenated
encodings as one message): about 2.5 us, and the row is serialised once for all.
"""

from __future__ import annotations

from driftloop.v1 import common_pb2, events_pb2

ROW_FEATURES_TAG = 0x0A  # field 1, length-delimited


def map_entries(row: bytes, field: int) -> bytes | None:
    """A serialised Row's feature entries re-tagged as map field `field` (1..15, one tag
    byte), or None when the row holds anything else (unknown fields, a malformed length)."""
    tag = field << 3 | 2
    assert 1 <= field <= 15, "a one-byte tag"
    out = bytearray(row)
    i, n = 0, len(row)
    while i < n:
        if row[i] != ROW_FEATURES_TAG:
            return None
        out[i] = tag
        length = row[i + 1] if i + 1 < n else 0
        i += 2
        if length >= 0x80:  # a varint of more than one byte
            length &= 0x7F
            shift = 7
            while i < n:
                byte = row[i]
                i += 1
                length |= (byte & 0x7F) << shift
                if byte < 0x80:
                    break
                shift += 7
        i += length
    return bytes(out) if i == n else None


def with_features(
    message: events_pb2.PredictionEvent | events_pb2.ShadowRequest, row: bytes
) -> bytes:
    """`message` serialised with the row's features as its `features` map; by a copy when
    the row cannot be re-tagged."""
    field = message.DESCRIPTOR.fields_by_name["features"].number
    entries = map_entries(row, field)
    if entries is None:
        message.features.MergeFrom(common_pb2.Row.FromString(row).features)
        return message.SerializeToString()
    return message.SerializeToString() + entries
