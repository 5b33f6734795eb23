"""Transport-free model types: input schema, rows, predictions, output kinds."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from driftloop.kit.errors import InvalidArgument
from driftloop.kit.names import MAX_KEY_CHARS

FeatureKind = Literal["number", "category"]
OutputKind = Literal["binary", "multiclass", "regression"]
Value = float | str
Row = Mapping[str, Value]

MAX_CATEGORY_CHARS = MAX_KEY_CHARS  # a category is stored and logged as a key


@dataclass(frozen=True)
class Feature:
    name: str
    kind: FeatureKind
    allow_nan: bool = False
    categories: tuple[str, ...] = ()


@dataclass(frozen=True)
class Schema:
    features: tuple[Feature, ...]
    by_name: dict[str, Feature] = field(init=False, compare=False, repr=False)
    # (name, is a number) per feature: what the valid row's one pass reads.
    _kinds: tuple[tuple[str, bool], ...] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {feature.name: feature for feature in self.features})
        object.__setattr__(
            self, "_kinds", tuple((f.name, f.kind == "number") for f in self.features)
        )
        if len(self.by_name) != len(self.features):
            raise ValueError("feature names must be unique")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(feature.name for feature in self.features)

    def validate(self, rows: Sequence[Row], max_rows: int, path: str = "rows") -> None:
        """Raise InvalidArgument naming the first offending field of the first bad row."""
        if not rows:
            raise InvalidArgument(path, "no rows")
        if len(rows) > max_rows:
            raise InvalidArgument(path, f"{len(rows)} rows is more than the limit of {max_rows}")
        for index, row in enumerate(rows):
            self.validate_row(row, f"{path}[{index}]" if len(rows) > 1 or path != "row" else path)

    def validate_row(self, row: Row, path: str = "row") -> None:
        """Raise InvalidArgument naming the first offending field of `row`.

        A valid row, the common case on every request's path, is told in one pass
        (`_plainly_valid`); any doubt goes to the full checks, which find the first fault
        and name it (a third of the cost per row when nothing is wrong)."""
        if not self._plainly_valid(row):
            self._check_row(row, path)

    def _plainly_valid(self, row: Row) -> bool:
        """Exactly the schema's features, each a finite float or a short string of its kind.

        Accepts only rows `_check_row` accepts: a missing feature reads None, which is
        neither; a NaN (allowed or not), an int, a bool or an infinity is left to it."""
        if len(row) != len(self._kinds):
            return False
        get = row.get
        for name, number in self._kinds:
            value = get(name)
            if number:
                if type(value) is not float or value - value != 0.0:  # NaN and inf give NaN
                    return False
            elif type(value) is not str or len(value) > MAX_CATEGORY_CHARS:
                return False
        return True

    def _check_row(self, row: Row, path: str) -> None:
        missing = [name for name in self.by_name if name not in row]
        if missing:
            raise InvalidArgument(f"{path}.{missing[0]}", "missing feature" + _also(missing))
        if len(row) != len(self.features):
            unknown = sorted(name for name in row if name not in self.by_name)
            raise InvalidArgument(
                f"{path}.{unknown[0]}",
                f"unknown feature (the model expects {', '.join(self.names)})",
            )
        for feature in self.features:
            value = row[feature.name]
            where = f"{path}.{feature.name}"
            if feature.kind == "number":
                if not isinstance(value, float | int) or isinstance(value, bool):
                    raise InvalidArgument(where, f"expected a number, got a {_kind(value)}")
                if math.isnan(value):
                    if not feature.allow_nan:
                        raise InvalidArgument(where, "NaN is not allowed for this feature")
                elif math.isinf(value):
                    raise InvalidArgument(where, "infinity is not allowed")
            else:
                if not isinstance(value, str):
                    raise InvalidArgument(where, f"expected a category, got a {_kind(value)}")
                if len(value) > MAX_CATEGORY_CHARS:
                    raise InvalidArgument(where, f"longer than {MAX_CATEGORY_CHARS} characters")


def _kind(value: object) -> str:
    return (
        "number"
        if isinstance(value, float | int)
        else "category"
        if isinstance(value, str)
        else type(value).__name__
    )


def _also(missing: list[str]) -> str:
    return f" (also missing: {', '.join(missing[1:])})" if len(missing) > 1 else ""


@dataclass(frozen=True)
class Prediction:
    """One output. binary: value = P(positive), label "1"/"0"; multiclass: probabilities;
    regression: value."""

    value: float
    label: str = ""
    probabilities: Mapping[str, float] | None = None


class Model(Protocol):
    """What every flavor offers the inference service. `inline` models are fast and
    trusted enough to run on the event loop; the others run in a worker thread."""

    schema: Schema
    output_kind: OutputKind
    inline: bool

    def predict(self, rows: Sequence[Row]) -> list[Prediction]: ...
