"""A user model behind a Python entry point (the `python` flavor), for tests."""

from __future__ import annotations

import time
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


class Failing:
    """A broken candidate: every prediction raises."""

    @classmethod
    def load(cls, path: Path) -> Failing:
        return cls()

    def predict(self, rows: list[dict[str, float]]) -> list[float]:
        raise RuntimeError("this model is broken")


class Slow:
    """A slow candidate: 150 ms per call, then a fixed probability."""

    @classmethod
    def load(cls, path: Path) -> Slow:
        return cls()

    def predict(self, rows: list[dict[str, float]]) -> list[float]:
        time.sleep(0.15)
        return [0.5 for _ in rows]


class SlowShadow:
    """A slow shadow: 50 ms per call, then a fixed probability."""

    @classmethod
    def load(cls, path: Path) -> SlowShadow:
        return cls()

    def predict(self, rows: list[dict[str, float | str]]) -> list[float]:
        time.sleep(0.05)
        return [0.5 for _ in rows]
