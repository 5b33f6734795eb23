"""The user flavor: a model trained elsewhere, behind a Python entry point.

The entry point `module:Class` names a class with
    Class.load(path: pathlib.Path) -> instance     (path: the verified artifact file)
    instance.predict(rows: list[dict]) -> list[...]
where each result is a float (regression value, or P(positive) for binary), or a
dict of class -> probability (multiclass).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from driftloop.models.schema import OutputKind, Prediction, Row, Schema

FLAVOR = "python"
ENTRY_POINT = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def load_entry_point(entry_point: str) -> Any:
    if not ENTRY_POINT.fullmatch(entry_point):
        raise ValueError(f"entry point {entry_point!r} is not of the form module:Class")
    module_name, _, attribute = entry_point.partition(":")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ValueError(f"module {module_name} has no {attribute}") from None


class PythonModel:
    inline = False

    def __init__(
        self, entry_point: str, artifact: Path, schema: Schema, output_kind: OutputKind
    ) -> None:
        cls = load_entry_point(entry_point)
        self.instance = cls.load(artifact)
        self.schema = schema
        self.output_kind: OutputKind = output_kind

    def predict(self, rows: Sequence[Row]) -> list[Prediction]:
        results = self.instance.predict([dict(row) for row in rows])
        if len(results) != len(rows):
            raise RuntimeError(f"the model returned {len(results)} results for {len(rows)} rows")
        return [self._convert(result) for result in results]

    def _convert(self, result: Any) -> Prediction:
        if self.output_kind == "multiclass":
            probabilities = {str(k): float(v) for k, v in dict(result).items()}
            best = max(probabilities, key=probabilities.__getitem__)
            return Prediction(value=probabilities[best], label=best, probabilities=probabilities)
        value = float(result)
        if self.output_kind == "binary":
            return Prediction(
                value=value,
                label="1" if value >= 0.5 else "0",
                probabilities={"1": value, "0": 1.0 - value},
            )
        return Prediction(value=value)
