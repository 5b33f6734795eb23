"""The river flavor: any river estimator or pipeline, pickled, which can also learn online.

Pickle runs code when loaded: only artifacts the registry recorded (and whose SHA-256
verified) are ever loaded.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import Any

from driftloop.models.schema import OutputKind, Prediction, Row, Schema

FLAVOR = "river"


class RiverModel:
    inline = False

    def __init__(self, estimator: Any, schema: Schema, output_kind: OutputKind) -> None:
        self.estimator = estimator
        self.schema = schema
        self.output_kind: OutputKind = output_kind
        if output_kind != "regression" and not hasattr(estimator, "predict_proba_one"):
            raise ValueError("a river classifier needs predict_proba_one")

    @classmethod
    def from_bytes(cls, raw: bytes, schema: Schema, output_kind: OutputKind) -> RiverModel:
        return cls(pickle.loads(raw), schema, output_kind)  # verified artifact

    @staticmethod
    def to_bytes(estimator: Any) -> bytes:
        return pickle.dumps(estimator, protocol=5)

    def predict(self, rows: Sequence[Row]) -> list[Prediction]:
        return [self._one(dict(row)) for row in rows]

    def learn(self, row: Row, truth: float | str) -> None:
        """Learn one labelled row online."""
        self.estimator.learn_one(dict(row), truth)

    def _one(self, row: dict[str, float | str]) -> Prediction:
        if self.output_kind == "regression":
            return Prediction(value=float(self.estimator.predict_one(row)))
        raw = self.estimator.predict_proba_one(row) or {}
        probabilities = {str(k): float(v) for k, v in raw.items()}
        if self.output_kind == "binary":
            p = probabilities.get("True", probabilities.get("1", 0.0))
            return Prediction(
                value=p, label="1" if p >= 0.5 else "0", probabilities={"1": p, "0": 1.0 - p}
            )
        if not probabilities:
            return Prediction(value=0.0, label="", probabilities={})
        best = max(probabilities, key=probabilities.__getitem__)
        return Prediction(value=probabilities[best], label=best, probabilities=probabilities)
