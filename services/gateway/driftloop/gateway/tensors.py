"""Open Inference Protocol tensors to driftloop rows, and outputs back to tensors. Pure.

Inputs, one of two layouts:
- one tensor per feature, named as the feature, shape [batch] or [batch, 1]: a number
  feature takes any numeric datatype (BOOL, INT8..INT64, UINT8..UINT64, FP16, FP32, FP64),
  a category feature BYTES (UTF-8 text);
- one tensor named `input`, of a numeric datatype, shape [batch, n_features], its columns
  the schema's features in order: for a model whose features are all numbers.
Elements come in the tensor's `contents` (the field of its datatype) or, for every input
at once, in `raw_input_contents` (little-endian, row-major; a BYTES element a 4-byte
length and its bytes), which is what tritonclient sends. The schema is the served
version's; every version still validates its own rows, as it does for Predict. Each
mistake is INVALID_ARGUMENT naming the tensor (`inputs[plan]`) or the field.

Outputs, each [batch] unless said, in `raw_output_contents` (tritonclient reads only
those; other clients read both):
- `value` FP64: the prediction of a regression, the positive class's probability of a
  binary classifier, the top probability of a multiclass one (Output.value);
- `label` BYTES, classifiers: the predicted class;
- `probabilities` FP64 [batch, n_classes], when the model reports them: its parameter
  `classes` is the JSON list of the columns' classes;
- `request_id`, `version`, `variant` BYTES: each row's request id (the key its label is
  joined on), the version that answered it and its routing variant.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Sequence

import numpy as np

from driftloop.gateway.serving import Served
from driftloop.kit.errors import InvalidArgument, shown
from driftloop.oip.v2 import grpc_predict_v2_pb2 as oip
from driftloop.v1 import common_pb2

MATRIX = "input"
NUMERIC = {
    "BOOL": np.dtype("?"),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
BYTES = "BYTES"
# Where each datatype's elements are in InferTensorContents (FP16: raw only).
CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    BYTES: "bytes_contents",
}
OUTPUTS = ("value", "label", "probabilities", "request_id", "version", "variant")
CLASSIFIERS = (common_pb2.OUTPUT_KIND_BINARY, common_pb2.OUTPUT_KIND_MULTICLASS)

Tensor = oip.ModelInferRequest.InferInputTensor


def decode(request: oip.ModelInferRequest, schema: common_pb2.InputSchema) -> list[common_pb2.Row]:
    """The request's rows, checked against `schema`."""
    inputs = list(request.inputs)
    if not inputs:
        raise InvalidArgument("inputs", "no input tensors")
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(inputs):
        raise InvalidArgument(
            "raw_input_contents", f"{len(raw)} entries for {len(inputs)} inputs: one per input"
        )
    names = [tensor.name for tensor in inputs]
    given: set[str] = set()
    for name in names:
        if name in given:
            raise InvalidArgument(f"inputs[{name}]", "given twice")
        given.add(name)
    features = {spec.name: spec for spec in schema.features}
    if names == [MATRIX] and MATRIX not in features:
        return _matrix_rows(inputs[0], raw[0] if raw else None, schema)
    columns: dict[str, list[float | str]] = {}
    batch: int | None = None
    for index, tensor in enumerate(inputs):
        field = f"inputs[{tensor.name}]"
        spec = features.get(tensor.name)
        if spec is None:
            known = ", ".join(features) or "none"
            raise InvalidArgument(
                field,
                f"not a feature of the model (its features: {known}; or one [batch, n] tensor "
                f"named {MATRIX!r} when every feature is a number)",
            )
        size = _column_size(tensor, field)
        if batch is not None and size != batch:
            raise InvalidArgument(field, f"batch of {size}, the other inputs' is {batch}")
        batch = size
        if spec.type == common_pb2.FEATURE_TYPE_CATEGORY and tensor.datatype != BYTES:
            raise InvalidArgument(
                field,
                f"datatype {shown(tensor.datatype)}, but {spec.name} is a category: send BYTES",
            )
        if spec.type != common_pb2.FEATURE_TYPE_CATEGORY and tensor.datatype == BYTES:
            raise InvalidArgument(
                field, f"datatype BYTES, but {spec.name} is a number: send FP32 or FP64"
            )
        columns[tensor.name] = _elements(tensor, raw[index] if raw else None, field, size)
    missing = [name for name in features if name not in columns]
    if missing:
        raise InvalidArgument(f"inputs[{missing[0]}]", f"missing (no tensor for {missing})")
    assert batch is not None
    rows = [common_pb2.Row() for _ in range(batch)]
    for name, values in columns.items():
        for row, value in zip(rows, values, strict=True):
            if isinstance(value, str):
                row.features[name].category = value
            else:
                row.features[name].number = value
    return rows


def _column_size(tensor: Tensor, field: str) -> int:
    shape = list(tensor.shape)
    if (len(shape) == 2 and shape[1] == 1) or len(shape) == 1:
        if shape[0] < 1:
            raise InvalidArgument(field, f"shape {shape}: the batch must be at least 1")
        return int(shape[0])
    raise InvalidArgument(field, f"shape {shape}: one feature's tensor is [batch] or [batch, 1]")


def _matrix_rows(
    tensor: Tensor, raw: bytes | None, schema: common_pb2.InputSchema
) -> list[common_pb2.Row]:
    field = f"inputs[{MATRIX}]"
    names = [spec.name for spec in schema.features]
    categories = [
        spec.name for spec in schema.features if spec.type == common_pb2.FEATURE_TYPE_CATEGORY
    ]
    if categories:
        raise InvalidArgument(
            field,
            f"the model has category features ({', '.join(categories)}): send one tensor per "
            "feature",
        )
    shape = list(tensor.shape)
    if len(shape) != 2 or shape[0] < 1 or shape[1] != len(names):
        raise InvalidArgument(
            field, f"shape {shape}: expected [batch, {len(names)}], the columns {names}"
        )
    if tensor.datatype == BYTES:
        raise InvalidArgument(field, "BYTES: the features are numbers, send FP32 or FP64")
    values = _elements(tensor, raw, field, shape[0] * shape[1])
    rows = []
    for start in range(0, len(values), len(names)):
        row = common_pb2.Row()
        for name, value in zip(names, values[start : start + len(names)], strict=True):
            row.features[name].number = float(value)
        rows.append(row)
    return rows


def _elements(tensor: Tensor, raw: bytes | None, field: str, count: int) -> list[float | str]:
    """The tensor's `count` elements: floats, or str for BYTES."""
    datatype = tensor.datatype
    if datatype != BYTES and datatype not in NUMERIC:
        raise InvalidArgument(
            field, f"datatype {shown(datatype)} is not one of {', '.join([*NUMERIC, BYTES])}"
        )
    if raw is not None:
        if tensor.HasField("contents"):
            raise InvalidArgument(field, "contents and raw_input_contents: send one of them")
        if datatype == BYTES:
            return _texts(_raw_bytes(raw, field), field, count)
        dtype = NUMERIC[datatype]
        if len(raw) != count * dtype.itemsize:
            raise InvalidArgument(
                field,
                f"{len(raw)} raw bytes, expected {count} {datatype} elements "
                f"({count * dtype.itemsize} bytes)",
            )
        numbers: list[float | str] = np.frombuffer(raw, dtype=dtype).astype(np.float64).tolist()
        return numbers
    if datatype == "FP16":
        raise InvalidArgument(field, "FP16 elements can only be sent in raw_input_contents")
    elements = list(getattr(tensor.contents, CONTENTS_FIELD[datatype]))
    if len(elements) != count:
        raise InvalidArgument(
            field,
            f"{len(elements)} elements in contents.{CONTENTS_FIELD[datatype]}, "
            f"the shape {list(tensor.shape)} holds {count}",
        )
    if datatype == BYTES:
        return _texts(elements, field, count)
    return [float(x) for x in elements]


def _raw_bytes(raw: bytes, field: str) -> list[bytes]:
    """BYTES elements from their raw form: each a 4-byte little-endian length, then it."""
    elements, at = [], 0
    while at < len(raw):
        if at + 4 > len(raw):
            raise InvalidArgument(field, "raw BYTES content ends inside an element's length")
        (size,) = struct.unpack_from("<I", raw, at)
        at += 4
        if at + size > len(raw):
            raise InvalidArgument(field, "raw BYTES content ends inside an element")
        elements.append(raw[at : at + size])
        at += size
    return elements


def _texts(elements: Sequence[bytes], field: str, count: int) -> list[float | str]:
    if len(elements) != count:
        raise InvalidArgument(field, f"{len(elements)} elements, the shape holds {count}")
    try:
        return [element.decode() for element in elements]
    except UnicodeDecodeError:
        raise InvalidArgument(field, "a BYTES element is not UTF-8 text") from None


def requested(request: oip.ModelInferRequest) -> list[str]:
    """The output names the request asks for (every one when it names none)."""
    names = [output.name for output in request.outputs]
    for name in names:
        if name not in OUTPUTS:
            raise InvalidArgument(
                f"outputs[{name}]", f"not an output of the gateway (its outputs: {OUTPUTS})"
            )
    return names or list(OUTPUTS)


def encode(answers: Sequence[Served], names: Sequence[str]) -> oip.ModelInferResponse:
    """The outputs `names` of the answers (those that apply to the model's kind)."""
    response = oip.ModelInferResponse()
    batch = len(answers)
    outputs = [answer.output for answer in answers]
    classifier = any(output.kind in CLASSIFIERS for output in outputs)
    classes = sorted({name for output in outputs for name in output.probabilities})
    for name in names:
        tensor = response.outputs.add(name=name)
        if name == "value":
            _numbers(response, tensor, [o.value for o in outputs], [batch])
        elif name == "label" and classifier:
            _texts_out(response, tensor, [o.label for o in outputs])
        elif name == "probabilities" and classes:
            flat = [o.probabilities.get(c, math.nan) for o in outputs for c in classes]
            _numbers(response, tensor, flat, [batch, len(classes)])
            tensor.parameters["classes"].string_param = json.dumps(classes)
        elif name in ("request_id", "version", "variant"):
            _texts_out(response, tensor, [getattr(a, name) for a in answers])
        else:  # label or probabilities of a model that has none
            del response.outputs[-1]
    versions = {answer.version for answer in answers}
    response.model_version = versions.pop() if len(versions) == 1 else ""
    return response


def _numbers(
    response: oip.ModelInferResponse,
    tensor: oip.ModelInferResponse.InferOutputTensor,
    values: Sequence[float],
    shape: list[int],
) -> None:
    tensor.datatype = "FP64"
    tensor.shape.extend(shape)
    response.raw_output_contents.append(np.asarray(values, dtype="<f8").tobytes())


def _texts_out(
    response: oip.ModelInferResponse,
    tensor: oip.ModelInferResponse.InferOutputTensor,
    values: Sequence[str],
) -> None:
    tensor.datatype = BYTES
    tensor.shape.append(len(values))
    encoded = [value.encode() for value in values]
    response.raw_output_contents.append(
        b"".join(struct.pack("<I", len(item)) + item for item in encoded)
    )


def metadata(
    model: str,
    version: str,
    flavor: str,
    schema: common_pb2.InputSchema,
    kind: common_pb2.OutputKind.ValueType,
    classes: Sequence[str],
) -> oip.ModelMetadataResponse:
    """A version's tensors: one input per feature ([-1]: any batch), and the outputs its
    kind has (`probabilities` as wide as its known classes, -1 when unknown)."""
    Meta = oip.ModelMetadataResponse.TensorMetadata
    response = oip.ModelMetadataResponse(name=model, versions=[version], platform=flavor)
    for spec in schema.features:
        category = spec.type == common_pb2.FEATURE_TYPE_CATEGORY
        response.inputs.append(
            Meta(name=spec.name, datatype=BYTES if category else "FP64", shape=[-1])
        )
    response.outputs.append(Meta(name="value", datatype="FP64", shape=[-1]))
    if kind in CLASSIFIERS:
        response.outputs.append(Meta(name="label", datatype=BYTES, shape=[-1]))
        response.outputs.append(
            Meta(name="probabilities", datatype="FP64", shape=[-1, len(classes) or -1])
        )
    for name in ("request_id", "version", "variant"):
        response.outputs.append(Meta(name=name, datatype=BYTES, shape=[-1]))
    return response
