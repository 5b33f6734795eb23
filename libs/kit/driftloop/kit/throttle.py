"""Rate limits for log lines a caller or a bad record can trigger over and over.

A flood of bad requests or poison records must not become a flood of log lines: each
key (a caller's address, a topic) gets at most one line per interval, and the next line
allowed says how many were held back in between.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable


class Throttle:
    def __init__(
        self,
        interval_s: float,
        *,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._interval = interval_s
        self._max_keys = max_keys
        self._clock = clock
        # key -> (time of the last allowed event, events held back since)
        self._keys: OrderedDict[Hashable, tuple[float, int]] = OrderedDict()

    def allow(self, key: Hashable) -> int | None:
        """None to hold this event back; else how many were held back since the last one."""
        now = self._clock()
        last = self._keys.get(key)
        if last is not None and now - last[0] < self._interval:
            self._keys[key] = (last[0], last[1] + 1)
            return None
        self._keys[key] = (now, 0)
        self._keys.move_to_end(key)
        while len(self._keys) > self._max_keys:  # forget the quietest keys first
            self._keys.popitem(last=False)
        return 0 if last is None else last[1]


def caller_of(peer: str) -> str:
    """The caller's host from a gRPC peer ("ipv4:10.0.0.7:52114" -> "ipv4:10.0.0.7"): a
    client that reconnects gets a new port, not a new allowance."""
    head, _, port = peer.rpartition(":")
    return head if head and port.isdigit() else peer
