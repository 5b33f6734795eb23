"""Consumer lag per partition: the partition's high watermark minus the next offset the
group has not handled yet (`driftloop_consumer_lag_records`).

The engines that drive a handler (the `BatchConsumer`, the drift sink's faust agent) tell
this what they know, when they know it: a batch received (its records are not handled yet,
so the lag counts them: a handler stuck on a store outage keeps showing them), a batch
handled (the position moves past it), and after each poll the high watermarks the broker
sent with its last fetch (an idle partition's lag follows its new records). A partition
appears once a batch of it was handled here; a partition that leaves this consumer (a
rebalance, a stop) loses its series, so each partition's lag is reported by its owner.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

from driftloop.kafka.metrics import CONSUMER_LAG

Partition = tuple[str, int]


class PartitionLag:
    def __init__(self, group: str) -> None:
        self._group = group
        self._positions: dict[Partition, int] = {}
        self._reported: set[Partition] = set()

    def received(self, partition: Partition, first_offset: int, highwater: int | None) -> None:
        """A batch from `first_offset` is in hand, not handled yet."""
        if highwater is not None:
            self._set(partition, highwater - first_offset)

    def handled(self, partition: Partition, next_offset: int) -> None:
        """Every record before `next_offset` is handled."""
        self._positions[partition] = next_offset

    def refresh(self, highwaters: Mapping[Partition, int | None]) -> None:
        """The partitions assigned now, with their last known high watermarks."""
        for partition in (self._reported | set(self._positions)) - set(highwaters):
            self._positions.pop(partition, None)
            if partition in self._reported:
                self._reported.discard(partition)
                # Another consumer of the group in this process may have removed it already.
                with contextlib.suppress(KeyError):
                    CONSUMER_LAG.remove(self._group, partition[0], str(partition[1]))
        for partition, highwater in highwaters.items():
            position = self._positions.get(partition)
            if highwater is not None and position is not None:
                self._set(partition, highwater - position)

    def clear(self) -> None:
        """This consumer stopped: its partitions are someone else's now."""
        self.refresh({})

    def _set(self, partition: Partition, lag: int) -> None:
        CONSUMER_LAG.labels(self._group, partition[0], str(partition[1])).set(max(lag, 0))
        self._reported.add(partition)
