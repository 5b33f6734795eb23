"""A user model behind a Python entry point (the `python` flavor), for tests."""

from __future__ import annotations

from pathlib import Path


class Scaled:
    """Predicts factor * (x + y); the artifact file holds the factor."""

    def __init__(self, factor: float) -> None:
        self.factor = factor

    @classmethod
    def load(cls, path: Path) -> Scaled:
        return cls(float(path.read_text()))

    def predict(self, rows: list[dict[str, float]]) -> list[float]:
        return [self.factor * (row["x"] + row["y"]) for row in rows]
