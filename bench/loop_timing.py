"""Benchmark: the closed loop's time from a change in the world to a promoted retrained
model, split by stage, over several seeded runs of the demo scenario.

Each run is the demo's scenario (driftloop.cli.loop) on a fresh database and topic prefix:
500 requests/s through the gateway, 60% labelled 5 s after the prediction, the churn
relation changing after 4,000 requests, nobody intervening. The stages, timed from the
change: the first drift alert, the first retraining run triggered, the first challenger
that passed the gate (its extract-to-gate time is the training cost), the canary
requested, the promotion. No peer closes this loop end to end; the goal (docs) is
promotion within the label delay + 60 s.

    make bench-loop            # 3 runs
    .venv/bin/python bench/loop_timing.py --runs 5
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import tempfile
import time
from pathlib import Path

from pydantic import SecretStr

from driftloop.cli.demo import OVERRIDES
from driftloop.cli.loop import LoopResult, Scenario, first_champion, run_loop
from driftloop.cli.stack import running_services
from driftloop.clickhouse.backend import EmbeddedBackend
from driftloop.clickhouse.client import ClickHouse
from driftloop.client import DriftloopClient
from driftloop.kafka.local_broker import LocalBroker, find_kafka_libs
from driftloop.kafka.producer import EventProducer
from driftloop.kafka.topics import TopicNames, ensure_topics
from driftloop.kit.logging import configure_logging
from driftloop.kit.settings import KafkaSettings
from driftloop.models.artifacts import LocalArtifactStore

STAGES = (
    ("alert", "first drift alert"),
    ("trigger", "first run triggered"),
    ("gate", "first challenger passed the gate"),
    ("register", "registered, canary requested"),
    ("promoted", "promoted"),
)


def stage_times(result: LoopResult) -> dict[str, float]:
    times: dict[str, float] = {}
    for stage in result.stages:
        if stage.at >= result.change_at and stage.kind not in times:
            times[stage.kind] = stage.at - result.change_at
    return times


async def one_run(
    run: int, seed: int, bootstrap: str, backend: EmbeddedBackend, root: Path
) -> LoopResult:
    kafka = KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=f"bench{run}.")
    await ensure_topics(kafka, bootstrap)
    clickhouse = ClickHouse(backend, f"loop_bench_{run}")
    await clickhouse.apply_schema()
    producer = EventProducer(kafka, bootstrap)
    await producer.start()
    try:
        artifacts = LocalArtifactStore(root / f"artifacts{run}")
        token = SecretStr(secrets.token_urlsafe(16))
        async with (
            running_services(
                kafka, bootstrap, clickhouse, artifacts, token, overrides=OVERRIDES
            ) as services,
            DriftloopClient(services.client_settings("bench")) as client,
        ):
            first = await first_champion(services, client, root / f"train{run}.csv", seed)
            return await run_loop(
                services,
                client,
                producer,
                TopicNames(kafka.topic_prefix),
                clickhouse,
                first.version,
                Scenario(seed=seed),
            )
    finally:
        await producer.stop()


async def main(runs: int, root: Path) -> None:
    """The runs, with the broker's, chDB's and the artifacts' state in `root`."""
    configure_logging("ERROR", "text")
    broker = LocalBroker(find_kafka_libs(), root / "kafka")
    await asyncio.to_thread(broker.start)
    backend = EmbeddedBackend(root / "clickhouse")
    results: list[dict[str, float]] = []
    accuracy: list[tuple[float, float]] = []
    try:
        for run in range(runs):
            started = time.monotonic()
            result = await one_run(run, 7 + run, broker.bootstrap_servers, backend, root)
            times = stage_times(result)
            results.append(times)
            old = result.accuracy_after_change.get(result.first_champion, (0, float("nan")))[1]
            new = result.accuracy_after_change.get(result.champion, (0, float("nan")))[1]
            accuracy.append((old, new))
            shown = ", ".join(f"{kind} {times[kind]:.1f}" for kind, _ in STAGES if kind in times)
            print(
                f"run {run + 1}/{runs} (seed {7 + run}, {time.monotonic() - started:.0f} s): "
                f"{shown}; accuracy after the change {old:.3f} -> {new:.3f}",
                flush=True,
            )
    finally:
        backend.close()
        await asyncio.to_thread(broker.stop)
    print("\nstage (seconds after the change)      median    min    max")
    for kind, label in STAGES:
        values = [times[kind] for times in results if kind in times]
        if values:
            print(
                f"  {label:<34} {statistics.median(values):6.1f} {min(values):6.1f} "
                f"{max(values):6.1f}  ({len(values)}/{runs} runs)"
            )
    promoted = [times["promoted"] for times in results if "promoted" in times]
    delay = Scenario().label_delay_s
    if promoted:
        median = statistics.median(promoted)
        print(
            f"\nchange -> promotion: median {median:.1f} s = label delay {delay:.0f} s + "
            f"{median - delay:.1f} s (goal: label delay + 60 s)"
        )
    gain = statistics.median(new - old for old, new in accuracy)
    print(f"accuracy gain of the new champion after the change: median {gain:+.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    # The work folder (broker, chDB, artifacts) is removed when the runs end, failed or
    # interrupted too; the services run in this process and log errors to its stdout.
    with tempfile.TemporaryDirectory(
        prefix="driftloop-loop-bench-", ignore_cleanup_errors=True
    ) as folder:
        asyncio.run(main(runs, Path(folder)))
