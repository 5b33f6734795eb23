"""Puts the live predictions of several Kafka partitions back in prediction-time order
before the online detectors see them, so the same stream gives the same alarms however
its partitions were interleaved by the consumer.

A CUSUM's alarm point depends on the order of its events. Kafka orders events within a
partition only, and a consumer reads its partitions interleaved in batches whose mix
depends on fetch timing: fed in arrival order, the same seeded stream gave different first
alarms (and named different features) from run to run. The buffer holds rows and releases
them sorted by (prediction time, request id): the request id breaks ties the same way in
every run.

When is a row safe to release? The watermark is the minimum, over the partitions that hold
it, of the newest prediction time each has delivered: a partition's next rows are not older
than its newest (up to the in-partition disorder, bounded by `window_us`), so every row
older than watermark - window has all its predecessors in hand. A slow partition therefore
holds the release back, which is the point. These bounds keep it live:

- a partition holds the watermark only while it delivers: one that delivered nothing for
  `idle_s` (wall clock) stops holding it, and holds it again with its next row;
- the partitions that hold it are the assigned ones (one assigned but not yet heard from
  holds everything back, until `idle_s` after it was first seen assigned), or, with no
  assignment known, the ones seen;
- at most `max_events` rows wait: past that the oldest are released, in order;
- `release_quiet` releases everything once nothing at all arrived for `idle_s`.

The order is exact while no bound fires before the rows it overtakes arrive: a partition
that stays silent for `idle_s` while others deliver, or a backlog over `max_events`, can
let a later-arriving older row in after newer ones (it is still seen, at the front of the
next release, and counted in `late`).

This is in-memory state like the detectors' statistics, not part of the effect the
consumer's offset commit protects (the ClickHouse insert): a restarted process starts its
detectors from zero and reads from the last commit, so rows buffered and lost in a crash
are lost to detection only, exactly as the statistics they would have fed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_MIN = -(2**63)
_MAX = 2**63 - 1
# The columns a pushed table must have; any others travel with the rows.
TIME = "micros"  # int64 prediction time, microseconds since the epoch
REQUEST_ID = "request_id"
PARTITION = "partition"
_ORDER = [(TIME, "ascending"), (REQUEST_ID, "ascending")]


class ReorderBuffer:
    def __init__(
        self,
        window_us: int,
        max_events: int,
        idle_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._window = window_us
        self._max = max_events
        self._idle = idle_s
        self._clock = clock
        self._pending: pa.Table | None = None
        self._newest: dict[int, int] = {}
        self._heard: dict[int, float] = {}
        self._last_push = clock()
        self._released_until = _MIN
        # Rows released after a newer row had been released (a bound fired before them).
        self.late = 0

    @property
    def pending(self) -> int:
        return 0 if self._pending is None else self._pending.num_rows

    def push(self, rows: pa.Table, assigned: Collection[int] = ()) -> pa.Table:
        """Take a batch's rows (columns micros, request_id, partition and any others) and
        return those now safe to release, oldest first. `assigned`: the partitions the
        consumer holds now (empty: unknown, the ones seen hold the watermark)."""
        now = self._clock()
        self._last_push = now
        if rows.num_rows:
            partitions = rows.column(PARTITION).to_numpy(zero_copy_only=False)
            micros = rows.column(TIME).to_numpy(zero_copy_only=False)
            for partition in np.unique(partitions).tolist():
                newest = int(micros[partitions == partition].max())
                self._newest[partition] = max(self._newest.get(partition, _MIN), newest)
                self._heard[partition] = now
        holding = set(assigned) if assigned else set(self._newest)
        for partition in holding:
            self._heard.setdefault(partition, now)
        active = [p for p in holding if now - self._heard[p] <= self._idle]
        # No partition holding it (all idle): nothing is missing, everything goes.
        watermark = min((self._newest.get(p, _MIN) for p in active), default=None)
        cutoff = _MAX if watermark is None else watermark - self._window
        return self._release(rows, cutoff)

    def release_quiet(self) -> pa.Table | None:
        """Everything waiting, oldest first, once nothing arrived for `idle_s` (the tail
        of a stream that stopped); None when it is not quiet yet or nothing waits."""
        if self._pending is None or self._clock() - self._last_push <= self._idle:
            return None
        return self._release(self._pending.slice(0, 0), _MAX)

    def _release(self, rows: pa.Table, cutoff: int) -> pa.Table:
        table = rows if self._pending is None else pa.concat_tables([self._pending, rows])
        order = pc.sort_indices(table, sort_keys=_ORDER).to_numpy()
        if (np.diff(order) != 1).any():  # a copy of every column (the maps), unless in order
            table = table.take(order)
        micros = table.column(TIME).to_numpy(zero_copy_only=False)
        bound = min(max(cutoff, _MIN), _MAX)
        ready = int(np.searchsorted(micros, np.int64(bound), side="left"))
        ready = max(ready, table.num_rows - self._max)
        released = table.slice(0, ready)
        self._pending = table.slice(ready) if ready < table.num_rows else None
        if ready:
            self.late += int(np.count_nonzero(micros[:ready] < self._released_until))
            self._released_until = max(self._released_until, int(micros[ready - 1]))
        return released
