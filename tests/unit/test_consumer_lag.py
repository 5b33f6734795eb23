"""The consumer lag gauge: what a consumer tells PartitionLag, per partition, becomes
`driftloop_consumer_lag_records{group, topic, partition}`."""

from __future__ import annotations

from prometheus_client import REGISTRY

from driftloop.kafka.lag import PartitionLag
from tests.conftest import unique_name


def lags(group: str) -> dict[tuple[str, str], float]:
    """The lag series of `group`, by (topic, partition)."""
    return {
        (sample.labels["topic"], sample.labels["partition"]): sample.value
        for family in REGISTRY.collect()
        if family.name == "driftloop_consumer_lag_records"
        for sample in family.samples
        if sample.labels["group"] == group
    }


def test_a_batch_in_hand_counts_until_it_is_handled() -> None:
    group = unique_name("group")
    lag = PartitionLag(group)
    lag.received(("p", 0), 100, 130)  # records 100..129 fetched, none handled yet
    lag.received(("p", 1), 7, None)  # no high watermark known: nothing to say yet
    assert lags(group) == {("p", "0"): 30}
    lag.handled(("p", 0), 130)
    lag.refresh({("p", 0): 130, ("p", 1): 9})
    assert lags(group) == {("p", "0"): 0}  # partition 1: no batch of it handled yet
    lag.handled(("p", 1), 9)
    lag.refresh({("p", 0): 175, ("p", 1): 9})  # 45 new records on an idle partition
    assert lags(group) == {("p", "0"): 45, ("p", "1"): 0}


def test_a_partition_that_leaves_the_consumer_loses_its_series() -> None:
    group = unique_name("group")
    lag = PartitionLag(group)
    for partition in (0, 1):
        lag.received(("p", partition), 0, 10)
        lag.handled(("p", partition), 10)
    lag.received(("p", 2), 0, 5)  # in hand when the rebalance took it: never handled here
    lag.refresh({("p", 1): 12})
    assert lags(group) == {("p", "1"): 2}
    lag.refresh({("p", 0): 20, ("p", 1): 12})  # assigned again: its old position is gone
    assert lags(group) == {("p", "1"): 2}
    other = PartitionLag(group)  # a second consumer of the group in this process
    other.received(("p", 1), 12, 12)
    other.clear()
    lag.clear()  # the series is gone already: no error
    assert lags(group) == {}


def test_the_lag_is_never_negative() -> None:
    group = unique_name("group")
    lag = PartitionLag(group)
    lag.handled(("p", 0), 50)  # a high watermark from an older fetch than the position
    lag.refresh({("p", 0): 40})
    assert lags(group) == {("p", "0"): 0}
