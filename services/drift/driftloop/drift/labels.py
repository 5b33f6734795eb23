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

import itertools
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple, TypeVar

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


class Served(NamedTuple):
    """A prediction waiting for its label (a tuple: a batch holds tens of thousands)."""

    model: str
    version: str
    kind: str
    label: str
    value: float
    # The prediction's time (microseconds since the epoch): an outcome's time.
    time_us: int = 0


# A Served as a plain tuple of its fields, as a batch's columns zip into (no call per row).
ServedRow = tuple[str, str, str, str, float, int]


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
        self._served: dict[int, Waiting[ServedRow]] = {}
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

    def prediction(self, request_id: str, served: ServedRow, partition: int = 0) -> Outcome | None:
        waiting = self._take(self._truths, partition, request_id)
        if waiting is not None:
            return _outcome(served, waiting)
        self._hold(self._served.setdefault(partition, OrderedDict()), request_id, served)
        return None

    def predictions(
        self, request_ids: Sequence[str], served: Sequence[ServedRow], partitions: Sequence[int]
    ) -> list[tuple[str, Outcome]]:
        """A batch of predictions, as `prediction` one at a time in this order would take
        them: the (request id, outcome) of each that met its label.

        Why not one at a time: that is a few dictionary operations and calls per
        prediction, and most predictions meet nothing (their labels come later). So the
        batch is taken partition by partition (a partition's side of the join is its own
        dictionary; the order within each is kept): a prediction whose id a label waits
        under is taken alone, and each run of the others is held with one dictionary
        update, then trimmed to the bound once: the same entries in the same order as
        holding each in turn (each hold trims the oldest, and only a hold that overflows
        expires). A batch repeating an id, or holding one that already waits, is taken
        one at a time in its order (a repeat moves its entry to the end)."""
        ids = set(request_ids)
        if len(ids) < len(request_ids) or any(
            not waiting.keys().isdisjoint(ids) for waiting in self._served.values()
        ):
            return [
                (key, outcome)
                for key, row, partition in zip(request_ids, served, partitions, strict=True)
                if (outcome := self.prediction(key, row, partition)) is not None
            ]
        part = np.asarray(partitions, dtype=np.int64)
        order = np.argsort(part, kind="stable")
        if (np.diff(order) != 1).any():
            request_ids = [request_ids[i] for i in order.tolist()]
            served = [served[i] for i in order.tolist()]
            part = part[order]
        meeting = set().union(*(ids & waiting.keys() for waiting in self._truths.values()))
        alone = {i for i, key in enumerate(request_ids) if key in meeting} if meeting else set()
        changes = (np.flatnonzero(np.diff(part)) + 1).tolist()
        bounds = sorted({0, len(request_ids), *changes, *alone, *(i + 1 for i in alone)})
        met: list[tuple[str, Outcome]] = []
        for first, end in itertools.pairwise(bounds):
            partition = int(part[first])
            if first in alone:
                outcome = self.prediction(request_ids[first], served[first], partition)
                if outcome is not None:
                    met.append((request_ids[first], outcome))
                continue
            waiting = self._served.setdefault(partition, OrderedDict())
            arrived = itertools.repeat(self._clock())
            rows = zip(arrived, served[first:end], strict=False)  # arrived: endless
            waiting.update(zip(request_ids[first:end], rows, strict=True))
            self._trim(waiting)
        return met

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
        self._trim(waiting)

    def _trim(self, waiting: Waiting[T]) -> None:
        """Keep `waiting` within the bound: first drop what expired, then the oldest."""
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


def _outcome(served: ServedRow, truth: Truth) -> Outcome:
    model, version, kind, label, value, time_us = served
    error = errors(
        kind,
        np.asarray([label], dtype=object),
        np.asarray([value]),
        np.asarray([truth.label], dtype=object),
        np.asarray([truth.value]),
        np.asarray([truth.is_label]),
    )
    return Outcome(model, version, float(error[0]), time_us)
