"""Open Inference Protocol tensors to rows and back (the gateway's OIP adapter)."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from driftloop.gateway import tensors
from driftloop.gateway.oip import entity_key, row_ids
from driftloop.gateway.serving import Served
from driftloop.kit.errors import InvalidArgument
from driftloop.oip.v2 import grpc_predict_v2_pb2 as oip
from driftloop.v1 import common_pb2

NUMBER, CATEGORY = common_pb2.FEATURE_TYPE_NUMBER, common_pb2.FEATURE_TYPE_CATEGORY
SCHEMA = common_pb2.InputSchema(
    features=[
        common_pb2.FeatureSpec(name="age", type=NUMBER),
        common_pb2.FeatureSpec(name="plan", type=CATEGORY, categories=["basic", "pro"]),
    ]
)
NUMBERS = common_pb2.InputSchema(
    features=[common_pb2.FeatureSpec(name=f"x{i}", type=NUMBER) for i in range(3)]
)
Tensor = oip.ModelInferRequest.InferInputTensor


def raw_texts(*texts: str) -> bytes:
    return b"".join(struct.pack("<I", len(t.encode())) + t.encode() for t in texts)


def features(row: common_pb2.Row) -> dict[str, float | str]:
    return {
        name: value.number if value.WhichOneof("kind") == "number" else value.category
        for name, value in row.features.items()
    }


def test_one_tensor_per_feature_in_contents() -> None:
    request = oip.ModelInferRequest(
        inputs=[
            Tensor(
                name="age",
                datatype="FP64",
                shape=[2],
                contents=oip.InferTensorContents(fp64_contents=[31.0, 47.5]),
            ),
            Tensor(
                name="plan",
                datatype="BYTES",
                shape=[2, 1],
                contents=oip.InferTensorContents(bytes_contents=[b"pro", b"basic"]),
            ),
        ]
    )
    rows = tensors.decode(request, SCHEMA)
    assert [features(r) for r in rows] == [
        {"age": 31.0, "plan": "pro"},
        {"age": 47.5, "plan": "basic"},
    ]


def test_raw_contents_as_tritonclient_sends_them() -> None:
    request = oip.ModelInferRequest(
        inputs=[
            Tensor(name="plan", datatype="BYTES", shape=[2, 1]),
            Tensor(name="age", datatype="INT32", shape=[2, 1]),
        ],
        raw_input_contents=[raw_texts("pro", "été"), np.array([3, 4], "<i4").tobytes()],
    )
    rows = tensors.decode(request, SCHEMA)
    assert [features(r) for r in rows] == [{"age": 3.0, "plan": "pro"}, {"age": 4.0, "plan": "été"}]


def test_one_matrix_in_schema_order_when_every_feature_is_a_number() -> None:
    matrix = np.arange(6, dtype="<f4").reshape(2, 3)
    request = oip.ModelInferRequest(
        inputs=[Tensor(name="input", datatype="FP32", shape=[2, 3])],
        raw_input_contents=[matrix.tobytes()],
    )
    rows = tensors.decode(request, NUMBERS)
    assert [features(r) for r in rows] == [
        {"x0": 0.0, "x1": 1.0, "x2": 2.0},
        {"x0": 3.0, "x1": 4.0, "x2": 5.0},
    ]
    with pytest.raises(InvalidArgument) as error:
        tensors.decode(request, SCHEMA)  # a category feature cannot ride in a number matrix
    assert error.value.field == "inputs[input]" and "plan" in error.value.message


def fp64(name: str, values: list[float], shape: list[int] | None = None) -> Tensor:
    return Tensor(
        name=name,
        datatype="FP64",
        shape=shape or [len(values)],
        contents=oip.InferTensorContents(fp64_contents=values),
    )


def text(name: str, values: list[str], datatype: str = "BYTES") -> Tensor:
    return Tensor(
        name=name,
        datatype=datatype,
        shape=[len(values)],
        contents=oip.InferTensorContents(bytes_contents=[v.encode() for v in values]),
    )


@pytest.mark.parametrize(
    ("inputs", "field", "says"),
    [
        (
            [fp64("age", [1.0]), text("plan", ["pro"]), fp64("income", [2.0])],
            "inputs[income]",
            "not a feature",
        ),
        ([fp64("age", [1.0])], "inputs[plan]", "missing"),
        ([fp64("age", [1.0]), fp64("plan", [1.0])], "inputs[plan]", "category"),
        ([text("age", ["1"]), text("plan", ["pro"])], "inputs[age]", "number"),
        ([fp64("age", [1.0, 2.0]), text("plan", ["pro"])], "inputs[plan]", "batch of 1"),
        ([fp64("age", [1.0, 2.0], [1, 2]), text("plan", ["pro"])], "inputs[age]", "shape"),
        (
            [fp64("age", [1.0, 2.0], [3]), text("plan", ["a", "b", "c"])],
            "inputs[age]",
            "2 elements",
        ),
        ([fp64("age", [1.0]), text("plan", ["pro"], "STRING")], "inputs[plan]", "datatype"),
        ([fp64("age", [1.0]), fp64("age", [1.0])], "inputs[age]", "twice"),
        ([], "inputs", "no input"),
    ],
)
def test_every_mistake_names_its_tensor(inputs: list[Tensor], field: str, says: str) -> None:
    with pytest.raises(InvalidArgument) as error:
        tensors.decode(oip.ModelInferRequest(inputs=inputs), SCHEMA)
    assert error.value.field == field
    assert says in error.value.message


def test_raw_contents_must_fit_the_shape() -> None:
    request = oip.ModelInferRequest(
        inputs=[Tensor(name="age", datatype="FP32", shape=[2]), text("plan", ["a", "b"])],
        raw_input_contents=[b"\0" * 4, raw_texts("a", "b")],
    )
    with pytest.raises(InvalidArgument) as error:
        tensors.decode(request, SCHEMA)
    assert error.value.field == "inputs[age]" and "expected 2 FP32 elements" in error.value.message
    request.inputs[1].ClearField("contents")
    del request.raw_input_contents[1]
    with pytest.raises(InvalidArgument) as error:
        tensors.decode(request, SCHEMA)
    assert error.value.field == "raw_input_contents"


def decoded(response: oip.ModelInferResponse, name: str) -> np.ndarray:
    """An output as tritonclient reads it (raw_output_contents)."""
    index = [o.name for o in response.outputs].index(name)
    output, raw = response.outputs[index], response.raw_output_contents[index]
    if output.datatype == "BYTES":
        items, at = [], 0
        while at < len(raw):
            (size,) = struct.unpack_from("<I", raw, at)
            items.append(raw[at + 4 : at + 4 + size].decode())
            at += 4 + size
        return np.array(items).reshape(list(output.shape))
    return np.frombuffer(raw, dtype="<f8").reshape(list(output.shape))


def test_outputs_of_a_binary_classifier() -> None:
    answers = [
        Served(
            f"r-{i}",
            version,
            variant,
            common_pb2.Output(
                kind=common_pb2.OUTPUT_KIND_BINARY,
                value=p,
                label="1" if p > 0.5 else "0",
                probabilities={"1": p, "0": 1 - p},
            ),
        )
        for i, (p, version, variant) in enumerate([(0.8, "2", "a"), (0.25, "3", "b")])
    ]
    response = tensors.encode(answers, tensors.OUTPUTS)
    assert [o.name for o in response.outputs] == list(tensors.OUTPUTS)
    assert decoded(response, "value").tolist() == [0.8, 0.25]
    assert decoded(response, "label").tolist() == ["1", "0"]
    assert decoded(response, "probabilities").tolist() == [[1 - 0.8, 0.8], [0.75, 0.25]]
    classes = response.outputs[2].parameters["classes"].string_param
    assert json.loads(classes) == ["0", "1"]
    assert decoded(response, "request_id").tolist() == ["r-0", "r-1"]
    assert decoded(response, "variant").tolist() == ["a", "b"]
    assert response.model_version == ""  # two versions answered


def test_a_regression_has_no_label_and_outputs_can_be_chosen() -> None:
    answer = Served(
        "r", "4", "stable", common_pb2.Output(kind=common_pb2.OUTPUT_KIND_REGRESSION, value=3.5)
    )
    response = tensors.encode([answer], ["value", "label"])
    assert [o.name for o in response.outputs] == ["value"]
    assert response.model_version == "4"
    with pytest.raises(InvalidArgument) as error:
        tensors.requested(
            oip.ModelInferRequest(
                outputs=[oip.ModelInferRequest.InferRequestedOutputTensor(name="score")]
            )
        )
    assert error.value.field == "outputs[score]"


def test_request_ids_and_the_entity_key() -> None:
    assert row_ids("abc", 1) == ["abc"]
    assert row_ids("abc", 3) == ["abc-0", "abc-1", "abc-2"]
    with pytest.raises(InvalidArgument) as error:
        row_ids("x" * 127, 2)
    assert error.value.field == "id"
    request = oip.ModelInferRequest()
    assert entity_key(request) == ""
    request.parameters["entity_key"].string_param = "user-7"
    assert entity_key(request) == "user-7"
    request.parameters["entity_key"].int64_param = 7
    with pytest.raises(InvalidArgument) as error:
        entity_key(request)
    assert error.value.field == "parameters[entity_key]"
