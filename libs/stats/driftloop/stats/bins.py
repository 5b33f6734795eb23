"""Counting on frozen bins: numeric histograms that merge across windows, categorical counts.

Numeric bins are right-closed. Edges e_0 < e_1 < ... < e_{k-1} give k + 1 bins
(-inf, e_0], (e_0, e_1], ..., (e_{k-1}, inf), so +-inf land in the outer bins. NaN belongs
to no bin: `bin_index` marks it -1, `bin_counts` leaves it out and `Histogram` counts it
in `nans`. Categorical counts have one bucket per frozen category plus a last "unseen" bucket.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from driftloop.stats._types import Counts, Floats


def check_edges(edges: ArrayLike) -> Floats:
    """The edges as a float array; ValueError unless 1-D, non-empty, finite, strictly increasing."""
    array = np.asarray(edges, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError("edges must be a non-empty 1-D sequence")
    if not np.all(np.isfinite(array)):
        raise ValueError("edges must be finite")
    if np.any(np.diff(array) <= 0):
        raise ValueError("edges must be strictly increasing")
    return array


def _floats(values: ArrayLike) -> Floats:
    return np.asarray(values, dtype=np.float64).reshape(-1)


def bin_index(values: ArrayLike, edges: ArrayLike) -> NDArray[np.intp]:
    """The bin of each value, 0..len(edges); -1 for NaN. Values of any shape are flattened."""
    x = _floats(values)
    index = np.searchsorted(check_edges(edges), x, side="left")
    # searchsorted sorts NaN after every edge, which would count it as +inf.
    index[np.isnan(x)] = -1
    return index


def bin_counts(values: ArrayLike, edges: ArrayLike) -> Counts:
    """Count of values in each of the len(edges) + 1 bins; NaN values are not counted."""
    checked = check_edges(edges)
    index = bin_index(values, checked)
    return np.bincount(index[index >= 0], minlength=checked.size + 1).astype(np.int64)


@dataclass(frozen=True, eq=False)
class Histogram:
    """Counts of one window over frozen edges; window histograms add up to larger windows."""

    edges: tuple[float, ...]
    counts: Counts
    nans: int = 0

    def __post_init__(self) -> None:
        edges = check_edges(self.edges)
        # A private read-only copy: the instance is frozen, so its counts must be too.
        counts = np.array(self.counts, dtype=np.int64)
        if counts.shape != (edges.size + 1,):
            raise ValueError(f"expected {edges.size + 1} counts, got shape {counts.shape}")
        if np.any(counts < 0) or self.nans < 0:
            raise ValueError("counts must be non-negative")
        counts.flags.writeable = False
        object.__setattr__(self, "edges", tuple(float(edge) for edge in edges))
        object.__setattr__(self, "counts", counts)
        object.__setattr__(self, "nans", int(self.nans))

    @classmethod
    def of(cls, values: ArrayLike, edges: ArrayLike) -> Histogram:
        """The histogram of `values` over `edges`, NaN counted in `nans`."""
        x = _floats(values)
        checked = check_edges(edges)
        return cls(tuple(checked), bin_counts(x, checked), int(np.isnan(x).sum()))

    @classmethod
    def empty(cls, edges: ArrayLike) -> Histogram:
        """A histogram with no values, the start of a merge."""
        array = check_edges(edges)
        return cls(tuple(array), np.zeros(array.size + 1, dtype=np.int64))

    @property
    def total(self) -> int:
        """Number of binned (non-NaN) values."""
        return int(self.counts.sum())

    def merge(self, other: Histogram) -> Histogram:
        """The histogram of both windows together; ValueError if the edges differ."""
        if self.edges != other.edges:
            raise ValueError("cannot merge histograms with different edges")
        return Histogram(self.edges, self.counts + other.counts, self.nans + other.nans)

    def shares(self) -> Floats:
        """Share of binned values in each bin (NaN excluded); ValueError if there are none."""
        if self.total == 0:
            raise ValueError("an empty histogram has no shares")
        return self.counts / float(self.total)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Histogram):
            return NotImplemented
        return (
            self.edges == other.edges
            and self.nans == other.nans
            and bool(np.array_equal(self.counts, other.counts))
        )


def category_counts(values: Iterable[Hashable], categories: Sequence[Hashable]) -> Counts:
    """Count of each frozen category, then one last bucket for every value not among them."""
    position = {category: i for i, category in enumerate(categories)}
    if len(position) != len(categories):
        raise ValueError("categories must be distinct")
    unseen = len(categories)
    index = np.fromiter((position.get(value, unseen) for value in values), dtype=np.intp)
    return np.bincount(index, minlength=unseen + 1).astype(np.int64)
