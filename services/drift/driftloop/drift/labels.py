"""The online label join: predictions wait for their labels, labels for their predictions,
each for at most the horizon; a meeting yields the prediction's error for the detectors.

This is the stream's view only, and its memory is bounded: each Kafka partition holds at
most `per_partition` waiting predictions (and as many waiting labels); past that the oldest
is evicted and counted, as is what waited longer than the horizon. Labels that never come
(partial coverage at thousands of predictions a second) therefore cost a fixed amount of
memory, never a growing one. Predictions and labels are keyed by request id with the same
partitioner, so a label normally meets its prediction in its own partition; the other
partitions this replica holds are looked at too (a label producer with another partitioner
still joins on one replica). Entries are lost on a restart. ClickHouse holds every prediction
and label for good and joins them in the predictions_labelled view: windowed performance and
reports never depend on this join.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

import numpy as np

from driftloop.drift.outcomes import errors

# Why an entry left the join without meeting its other half.
Eviction = Literal["capacity", "horizon"]
Evicted = Callable[[Eviction, int], None]
T = TypeVar("T")
# One side of one partition: request id -> (arrival time, item), oldest first.
Waiting = OrderedDict[str, tuple[float, T]]


def _not_counted(reason: Eviction, entries: int) -> None:
    return None


@dataclass(frozen=True)
class Served:
    model: str
    version: str
    kind: str
    label: str
    value: float
    # The prediction's time (microseconds since the epoch): an outcome's time.
    time_us: int = 0


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
    time_us: int = 0


class LabelJoin:
    def __init__(
        self,
        horizon_s: float,
        per_partition: int,
        clock: Callable[[], float] = time.monotonic,
        evicted: Evicted = _not_counted,
    ) -> None:
        self._horizon = horizon_s
        self._max = per_partition
        self._clock = clock
        self._evicted = evicted
        self._served: dict[int, Waiting[Served]] = {}
        self._truths: dict[int, Waiting[Truth]] = {}
        self.expired = 0
        self.evictions = 0

    @property
    def pending(self) -> int:
        """Predictions and labels waiting, all partitions together."""
        return sum(map(len, self._served.values())) + sum(map(len, self._truths.values()))

    def pending_predictions(self, partition: int) -> int:
        return len(self._served.get(partition, ()))

    def pending_labels(self, partition: int) -> int:
        return len(self._truths.get(partition, ()))

    def prediction(self, request_id: str, served: Served, partition: int = 0) -> Outcome | None:
        waiting = self._take(self._truths, partition, request_id)
        if waiting is not None:
            return _outcome(served, waiting)
        self._hold(self._served.setdefault(partition, OrderedDict()), request_id, served)
        return None

    def label(self, request_id: str, truth: Truth, partition: int = 0) -> Outcome | None:
        waiting = self._take(self._served, partition, request_id)
        if waiting is not None:
            return _outcome(waiting, truth)
        self._hold(self._truths.setdefault(partition, OrderedDict()), request_id, truth)
        return None

    def expire(self) -> int:
        """Drop what waited longer than the horizon in every partition (a partition that
        gets no more records is cleaned too); the number dropped."""
        before = self.expired
        for served in self._served.values():
            self._expire(served)
        for truths in self._truths.values():
            self._expire(truths)
        return self.expired - before

    def _hold(self, waiting: Waiting[T], key: str, item: T) -> None:
        waiting[key] = (self._clock(), item)
        waiting.move_to_end(key)  # a replayed request id is as new as its last arrival
        if len(waiting) <= self._max:
            # Expired entries may wait for `expire` (each batch calls it): `_take` refuses
            # them on its own, and looking at the oldest on every hold cost more than
            # the rest of the join.
            return
        self._expire(waiting)
        over = len(waiting) - self._max
        if over > 0:
            for _ in range(over):
                waiting.popitem(last=False)
            self.evictions += over
            self._evicted("capacity", over)

    def _take(self, sides: dict[int, Waiting[T]], partition: int, request_id: str) -> T | None:
        """The item waiting under `request_id` (in `partition` first, then in any other),
        unless it waited longer than the horizon: then it is dropped as expired."""
        own = sides.get(partition)
        found = own.pop(request_id, None) if own else None
        if found is None:
            for waiting in sides.values():
                if waiting and (found := waiting.pop(request_id, None)) is not None:
                    break
            else:
                return None
        if found[0] < self._clock() - self._horizon:
            self.expired += 1
            self._evicted("horizon", 1)
            return None
        return found[1]

    def _expire(self, waiting: Waiting[T]) -> None:
        oldest = self._clock() - self._horizon
        dropped = 0
        while waiting and next(iter(waiting.values()))[0] < oldest:
            waiting.popitem(last=False)
            dropped += 1
        if dropped:
            self.expired += dropped
            self._evicted("horizon", dropped)


def _outcome(served: Served, truth: Truth) -> Outcome:
    error = errors(
        served.kind,
        np.asarray([served.label], dtype=object),
        np.asarray([served.value]),
        np.asarray([truth.label], dtype=object),
        np.asarray([truth.value]),
        np.asarray([truth.is_label]),
    )
    return Outcome(served.model, served.version, float(error[0]), served.time_us)
