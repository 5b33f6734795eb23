"""Column frames: the typed numpy columns a comparison or an experiment report reads.

A frame is a frozen dataclass of equal-length 1-D columns; `coerce_columns` gives each its
dtype (float64, object for text, bool) and refuses a frame whose kind or shapes are wrong,
so the statistics never see a ragged or mistyped input.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
TextArray = npt.NDArray[np.object_]
BoolArray = npt.NDArray[np.bool_]

KINDS: tuple[str, ...] = ("binary", "multiclass", "regression")
CLASSIFIERS: tuple[str, ...] = ("binary", "multiclass")
NAN_PAIR: tuple[float, float] = (math.nan, math.nan)


def coerce_columns(
    frame: Any, floats: Sequence[str], texts: Sequence[str], flags: Sequence[str]
) -> None:
    """Set every named column of the frozen `frame` to its dtype; check kind and shapes."""
    if frame.kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {frame.kind!r}")
    for names, dtype in ((floats, np.float64), (texts, object), (flags, np.bool_)):
        for name in names:
            object.__setattr__(frame, name, np.asarray(getattr(frame, name), dtype=dtype))
    shapes = {name: getattr(frame, name).shape for name in (*floats, *texts, *flags)}
    if any(len(shape) != 1 for shape in shapes.values()):
        raise ValueError(f"every column must be 1-D, got {shapes}")
    if len(set(shapes.values())) > 1:
        raise ValueError(f"columns differ in length: {shapes}")
