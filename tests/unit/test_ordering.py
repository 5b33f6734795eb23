"""The reordering buffer in front of the online detectors: the same rows come out in the
same order whatever the partition interleaving, and its bounds keep it live."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from driftloop.drift.ordering import ReorderBuffer

SECOND = 1_000_000


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def rows(micros: list[int], partitions: list[int], ids: list[str] | None = None) -> pa.Table:
    return pa.table(
        {
            "micros": pa.array(micros, pa.int64()),
            "request_id": ids if ids is not None else [f"r{m:012d}" for m in micros],
            "partition": pa.array(partitions, pa.int32()),
        }
    )


def seeded_stream(n: int, partitions: int, seed: int) -> pa.Table:
    """n events a second apart with ties (pairs share a time), spread over partitions by
    request id the way a key partitioner does; each partition in time order."""
    rng = np.random.default_rng(seed)
    micros = (np.arange(n) // 2) * SECOND
    ids = [f"req-{i:06d}" for i in rng.permutation(n)]
    return pa.table(
        {
            "micros": pa.array(micros, pa.int64()),
            "request_id": ids,
            "partition": pa.array([int(i[4:]) % partitions for i in ids], pa.int32()),
        }
    )


def consumed(
    stream: pa.Table, partitions: int, seed: int, window_us: int = 0
) -> tuple[list[str], ReorderBuffer]:
    """Feed the stream as a consumer would: batches of random size, each from a random mix
    of partitions (each partition read in its own order); the released ids in order."""
    rng = np.random.default_rng(seed)
    clock = Clock()
    buffer = ReorderBuffer(window_us, 1_000_000, idle_s=10.0, clock=clock)
    column = stream.column("partition").to_numpy()
    queues = {p: np.flatnonzero(column == p).tolist() for p in range(partitions)}
    released: list[str] = []
    while any(queues.values()):
        picked: list[int] = []
        for partition in rng.permutation(partitions).tolist():
            take = int(rng.integers(0, 40))
            picked += queues[partition][:take]
            del queues[partition][:take]
        clock.now += 0.01
        out = buffer.push(stream.take(pa.array(picked, pa.int64())), range(partitions))
        released += out.column("request_id").to_pylist()
    clock.now += 11.0
    tail = buffer.release_quiet()
    assert tail is not None
    released += tail.column("request_id").to_pylist()
    return released, buffer


def test_one_or_six_partitions_release_the_same_order() -> None:
    stream = seeded_stream(5000, 6, seed=3)
    single = stream.set_column(2, "partition", pa.array([0] * 5000, pa.int32()))
    one, _ = consumed(single, 1, seed=1)
    six_a, buffer = consumed(stream, 6, seed=2)
    six_b, _ = consumed(stream, 6, seed=4)
    expected = sorted(
        zip(
            stream.column("micros").to_pylist(),
            stream.column("request_id").to_pylist(),
            strict=True,
        )
    )
    assert one == six_a == six_b == [request_id for _, request_id in expected]
    assert buffer.late == 0 and buffer.pending == 0


def test_disorder_within_a_partition_is_repaired_within_the_window() -> None:
    buffer = ReorderBuffer(2 * SECOND, 1000, idle_s=10.0, clock=Clock())
    first = buffer.push(rows([0, 3 * SECOND, 1 * SECOND], [0, 0, 0]))
    assert first.column("micros").to_pylist() == [0]  # < newest (3 s) - window (2 s)
    second = buffer.push(rows([2 * SECOND, 6 * SECOND], [0, 0]))
    assert second.column("micros").to_pylist() == [1 * SECOND, 2 * SECOND, 3 * SECOND]
    assert buffer.late == 0 and buffer.pending == 1
    # Older than what went out already: released at once, at the front, and counted.
    third = buffer.push(rows([1 * SECOND + 5, 9 * SECOND], [0, 0]))
    assert third.column("micros").to_pylist() == [1 * SECOND + 5, 6 * SECOND]
    assert buffer.late == 1


def test_an_assigned_partition_holds_the_release_until_it_delivers_or_idles() -> None:
    clock = Clock()
    buffer = ReorderBuffer(0, 1000, idle_s=5.0, clock=clock)
    held = buffer.push(rows([1, 2, 3], [0, 0, 0]), assigned=[0, 1])
    assert held.num_rows == 0 and buffer.pending == 3  # partition 1 not heard from yet
    clock.now = 1.0
    out = buffer.push(rows([2], [1]), assigned=[0, 1])
    assert out.column("micros").to_pylist() == [1]  # the watermark is 2: ties wait
    clock.now = 7.0  # partition 1 silent for 6 s: it no longer holds partition 0 back
    out = buffer.push(rows([4, 5], [0, 0]), assigned=[0, 1])
    assert out.column("micros").to_pylist() == [2, 2, 3, 4]
    assert buffer.pending == 1


def test_ties_are_broken_by_request_id() -> None:
    buffer = ReorderBuffer(0, 1000, idle_s=5.0, clock=Clock())
    buffer.push(rows([7, 7], [0, 1], ["b", "c"]), assigned=[0, 1])
    out = buffer.push(rows([7, 8], [1, 0], ["a", "z"]), assigned=[0, 1])
    assert out.num_rows == 0  # partition 1 may still deliver another event at 7
    out = buffer.push(rows([9], [1], ["y"]), assigned=[0, 1])
    assert out.column("request_id").to_pylist() == ["a", "b", "c"]


def test_past_the_bound_the_oldest_go_in_order() -> None:
    buffer = ReorderBuffer(0, 3, idle_s=5.0, clock=Clock())
    out = buffer.push(rows([5, 1, 4, 2, 3], [0, 0, 0, 0, 0]), assigned=[0, 1])
    assert out.column("micros").to_pylist() == [1, 2]
    assert buffer.pending == 3


def test_the_tail_goes_once_nothing_arrived_for_the_idle_time() -> None:
    clock = Clock()
    buffer = ReorderBuffer(SECOND, 1000, idle_s=5.0, clock=clock)
    assert buffer.release_quiet() is None
    buffer.push(rows([1, 2], [0, 0]))
    clock.now = 5.0
    assert buffer.release_quiet() is None
    clock.now = 5.5
    tail = buffer.release_quiet()
    assert tail is not None and tail.column("micros").to_pylist() == [1, 2]
    assert buffer.pending == 0 and buffer.release_quiet() is None
