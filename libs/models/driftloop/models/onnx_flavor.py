"""The ONNX flavor: any model exported to ONNX (scikit-learn through skl2onnx, XGBoost and
LightGBM through onnxmltools, PyTorch through torch.onnx), run by onnxruntime.

Inputs, decided from the graph's declared inputs when the model loads:
- one input per feature, matched by name (skl2onnx's export of a pipeline with a
  ColumnTransformer): a number goes in as a [n, 1] tensor of the input's element type, a
  category as a [n, 1] string tensor;
- else a single numeric [n, k] input (XGBoost, LightGBM, PyTorch): the schema's features,
  all numbers, stacked in the schema's order, so k must equal their count.
Outputs:
- classifiers: the probabilities. A ZipMap output (a sequence of {class: p} maps, the
  skl2onnx default) carries the class labels; a [n, C] tensor (`zipmap=False`, onnxmltools,
  a PyTorch softmax) gives classes "0".."C-1"; for binary a single column (a sigmoid) is
  P("1"). The probability output is the one named like "prob", else the last 2-D float one.
- regression: the first float output, flattened.
A classifier is recognised by its probability output; a PyTorch sigmoid with one column
looks like a regression, so say `--output-kind binary` for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from driftloop.kit.errors import FailedPrecondition
from driftloop.models.schema import OutputKind, Prediction, Row, Schema
from driftloop.models.scores import Columns, Scores, columns_of, label_of, predictions

FLAVOR = "onnx"
_NUMERIC = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
}


class OnnxModel:
    inline = False  # onnxruntime releases the GIL: a worker thread keeps the loop free

    def __init__(self, data: bytes, schema: Schema, output_kind: OutputKind | None) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        # Calls already run in parallel on the service's worker threads.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        try:
            self.session = onnxruntime.InferenceSession(
                data, options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # noqa: BLE001  # onnxruntime's errors derive from Exception only
            raise FailedPrecondition(f"not a loadable ONNX model: {error}") from None
        self.schema = schema
        self.classes: tuple[str, ...] = ()
        self._inputs = self._map_inputs()
        outputs = self.session.get_outputs()
        self._probabilities = self._probability_output(outputs)
        if output_kind is None:
            output_kind = "regression" if self._probabilities is None else "multiclass"
            self._infer_binary = True
        else:
            self._infer_binary = False
        self.output_kind: OutputKind = output_kind
        if output_kind == "regression":
            numeric = [o.name for o in outputs if o.type in _NUMERIC]
            if not numeric:
                raise FailedPrecondition("the ONNX model has no numeric output for a regression")
            self._output = numeric[0]
        else:
            if self._probabilities is None:
                floats = [o.name for o in outputs if o.type in _NUMERIC]
                if not floats:
                    raise FailedPrecondition("the ONNX model has no probability output")
                self._probabilities = floats[-1]
            self._output = self._probabilities

    def _map_inputs(self) -> list[tuple[str, str, Any]]:
        """(input name, how: "feature" or "matrix", dtype) for each graph input."""
        inputs = self.session.get_inputs()
        names = set(self.schema.names)
        if {i.name for i in inputs} == names:
            mapped: list[tuple[str, str, Any]] = []
            for item in inputs:
                feature = self.schema.by_name[item.name]
                if feature.kind == "category":
                    if item.type != "tensor(string)":
                        raise FailedPrecondition(
                            f"input {item.name} is a category in the schema, {item.type} in "
                            "the ONNX model"
                        )
                    mapped.append((item.name, "feature", np.str_))
                elif item.type in _NUMERIC:
                    mapped.append((item.name, "feature", _NUMERIC[item.type]))
                else:
                    raise FailedPrecondition(
                        f"input {item.name} is a number in the schema, {item.type} in the "
                        "ONNX model"
                    )
            return mapped
        if len(inputs) == 1 and inputs[0].type in _NUMERIC:
            width = inputs[0].shape[-1] if inputs[0].shape else None
            if any(f.kind != "number" for f in self.schema.features):
                raise FailedPrecondition(
                    f"the ONNX model takes one numeric matrix ({inputs[0].name}): its schema "
                    "can only have numbers"
                )
            if isinstance(width, int) and width != len(self.schema.features):
                raise FailedPrecondition(
                    f"the ONNX model's input {inputs[0].name} has {width} columns, the schema "
                    f"{len(self.schema.features)} features"
                )
            return [(inputs[0].name, "matrix", _NUMERIC[inputs[0].type])]
        raise FailedPrecondition(
            "the ONNX model's inputs ("
            + ", ".join(f"{i.name}: {i.type}" for i in inputs)
            + ") are neither one per feature of the schema ("
            + ", ".join(self.schema.names)
            + ") nor one numeric matrix"
        )

    @staticmethod
    def _probability_output(outputs: Sequence[Any]) -> str | None:
        for output in outputs:
            if output.type.startswith("seq(map("):
                return str(output.name)
        for output in outputs:
            if "prob" in output.name.lower() and output.type in _NUMERIC:
                return str(output.name)
        return None

    def _feed(self, columns: Columns) -> dict[str, Any]:
        feed: dict[str, Any] = {}
        for name, how, dtype in self._inputs:
            if how == "matrix":
                feed[name] = np.column_stack([columns[n] for n in self.schema.names]).astype(dtype)
            else:
                feed[name] = columns[name].astype(dtype if dtype is not np.str_ else object)[
                    :, None
                ]
        return feed

    def score(self, columns: Columns) -> Scores:
        (result,) = self.session.run([self._output], self._feed(columns))
        if self.output_kind == "regression":
            return Scores(np.asarray(result, dtype=np.float64).reshape(-1))
        if isinstance(result, list):  # ZipMap: one {class: p} per row
            keys = list(result[0]) if result else []
            classes = tuple(label_of(k) for k in keys)
            matrix = np.asarray([[row[k] for k in keys] for row in result], dtype=np.float64)
        else:
            matrix = np.asarray(result, dtype=np.float64)
            if matrix.ndim == 1 or matrix.shape[1] == 1:
                p = matrix.reshape(-1)
                matrix = np.column_stack([1.0 - p, p])
            classes = tuple(str(i) for i in range(matrix.shape[1]))
        if self._infer_binary:
            self.output_kind = "binary" if len(classes) == 2 else "multiclass"
            self._infer_binary = False
        self.classes = classes
        return Scores(matrix, classes)

    @property
    def kind_known(self) -> bool:
        """False for a classifier loaded without an output kind that has not scored yet
        (binary or multiclass shows in its first scores)."""
        return not self._infer_binary

    def predict(self, rows: Sequence[Row]) -> list[Prediction]:
        return predictions(self.score(columns_of(rows, self.schema)), self.output_kind)
