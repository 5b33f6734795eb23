"""The online label join: predictions wait for their labels, labels for their predictions,
each for at most the horizon; a meeting yields the prediction's error for the detectors.

This is the stream's view only (memory bounded by the horizon and a size cap; lost on a
restart). ClickHouse holds every prediction and label for good and joins them in the
predictions_labelled view, so windowed performance never depends on this.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from driftloop.drift.outcomes import errors


@dataclass(frozen=True)
class Served:
    model: str
    version: str
    kind: str
    label: str
    value: float


@dataclass(frozen=True)
class Truth:
    label: str
    value: float
    is_label: bool


@dataclass(frozen=True)
class Outcome:
    model: str
    version: str
    error: float


class LabelJoin:
    def __init__(
        self,
        horizon_s: float,
        max_pending: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._horizon = horizon_s
        self._max = max_pending
        self._clock = clock
        self._served: OrderedDict[str, tuple[float, Served]] = OrderedDict()
        self._truths: OrderedDict[str, tuple[float, Truth]] = OrderedDict()
        self.expired = 0

    @property
    def pending(self) -> int:
        return len(self._served) + len(self._truths)

    def prediction(self, request_id: str, served: Served) -> Outcome | None:
        waiting = self._truths.pop(request_id, None)
        if waiting is not None:
            return _outcome(served, waiting[1])
        self._served[request_id] = (self._clock(), served)
        self._trim()
        return None

    def label(self, request_id: str, truth: Truth) -> Outcome | None:
        waiting = self._served.pop(request_id, None)
        if waiting is not None:
            return _outcome(waiting[1], truth)
        self._truths[request_id] = (self._clock(), truth)
        self._trim()
        return None

    def _trim(self) -> None:
        """Drop what waited longer than the horizon, and the oldest beyond the size cap."""
        oldest = self._clock() - self._horizon
        for pending in (self._served, self._truths):
            while pending and (
                next(iter(pending.values()))[0] < oldest or self.pending > self._max
            ):
                pending.popitem(last=False)
                self.expired += 1


def _outcome(served: Served, truth: Truth) -> Outcome:
    error = errors(
        served.kind,
        np.asarray([served.label], dtype=object),
        np.asarray([served.value]),
        np.asarray([truth.label], dtype=object),
        np.asarray([truth.value]),
        np.asarray([truth.is_label]),
    )
    return Outcome(served.model, served.version, float(error[0]))
