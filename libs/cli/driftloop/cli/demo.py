"""`driftloop demo`: the whole loop, end to end, with no person in it after the set-up.

A local Kafka broker (or the configured one), the topics under a prefix of this run's own,
ClickHouse (embedded unless configured) in a database of this run's own (nothing that
exists is dropped), and the five services in this process, as standalone mode runs them.
v1 is trained on seeded customers and made champion; its routing and training policies
are written. Then only the world acts (loop.py): customers through the gateway, their
labels later on Kafka, and at a known point a change in who churns and why. The demo
prints each stage of the loop as it happens (drift alerts, retraining triggers and
their decisions, the run's steps, the canary's steps, the promotion) with its time since
the change, then the time from the change to the promotion and the accuracy of the old
and the new champion on the labelled traffic after the change, and writes the model's
report (`driftloop report`) of the run into the data folder.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import secrets
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

from pydantic import SecretStr

from driftloop.cli.loop import MODEL, LoopResult, Scenario, Stage, first_champion, run_loop
from driftloop.cli.report import gather, write_report
from driftloop.cli.stack import running_services
from driftloop.clickhouse.client import open_clickhouse
from driftloop.client import DriftloopClient
from driftloop.kafka.local_broker import LocalBroker, check_plaintext, find_kafka_libs
from driftloop.kafka.producer import EventProducer
from driftloop.kafka.topics import TopicNames, ensure_topics
from driftloop.kit.settings import ClickHouseSettings, KafkaSettings, load_settings
from driftloop.models.artifacts import LocalArtifactStore

STEPS = 6
# The demo's services: evaluate windows often, alert again soon, ramp canaries fast.
OVERRIDES: dict[str, dict[str, object]] = {
    "drift": {
        "evaluate_every_s": 3,
        "window_last_n": 1500,
        "window_min_rows": 300,
        "concept_min_labelled": 200,
        "alert_debounce_s": 10,
        "sink_batch": 5000,
    },
    "gateway": {"controller_interval_s": 0.2, "canary_max_output_distance": 0.9},
    "retrainer": {"check_every_s": 1},
}


class Progress:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def step(self, number: int, text: str) -> None:
        print(f"[{number}/{STEPS}] {text}", flush=True)

    def note(self, text: str) -> None:
        print(f"      {text}", flush=True)

    def stage(self, stage: Stage) -> None:
        if stage.kind == "ignored":
            return  # alerts the policy does not act on: in the decisions, not on screen
        when = "before" if stage.since_change is None else f"{stage.since_change:+6.1f} s"
        print(f"      [{when:>8}] {stage.text}", flush=True)


@contextlib.asynccontextmanager
async def kafka(settings: KafkaSettings, data_dir: Path, progress: Progress) -> AsyncIterator[str]:
    """The configured broker, else a fresh local one that is stopped on the way out."""
    if settings.bootstrap_servers:
        progress.step(1, f"Kafka: using the configured broker at {settings.bootstrap_servers}")
        yield settings.bootstrap_servers
        return
    check_plaintext(settings)
    shutil.rmtree(data_dir, ignore_errors=True)
    broker = LocalBroker(find_kafka_libs(), data_dir)
    progress.step(1, f"Kafka: starting a local Apache Kafka broker (KRaft), data in {data_dir}")
    started = time.monotonic()
    await asyncio.to_thread(broker.start)
    progress.note(f"ready at {broker.bootstrap_servers} in {time.monotonic() - started:.1f} s")
    try:
        yield broker.bootstrap_servers
    finally:
        await asyncio.to_thread(broker.stop)
        progress.note("local broker stopped")


def _clickhouse_settings(data_dir: Path, run: str) -> ClickHouseSettings:
    """The configured ClickHouse (or the demo's embedded folder), in a database of this
    run's own: the demo creates it and never drops anything."""
    configured = (
        "DRIFTLOOP_CLICKHOUSE_URL" in os.environ or "DRIFTLOOP_CLICKHOUSE_PATH" in os.environ
    )
    settings = (
        load_settings(ClickHouseSettings)
        if configured
        else load_settings(ClickHouseSettings, path=data_dir / "clickhouse")
    )
    return settings.model_copy(update={"database": f"{settings.database}_demo_{run}"})


def summarise(result: LoopResult, progress: Progress) -> None:
    """The loop's timeline by stage, and what the new champion is worth."""
    times: dict[str, float] = {}
    for stage in result.stages:
        if stage.at >= result.change_at and stage.kind not in times:
            times[stage.kind] = stage.at - result.change_at
    labels = {
        "alert": "first drift alert",
        "trigger": "retraining triggered",
        "train": "challenger trained",
        "gate": "gate passed",
        "register": "registered, canary requested",
        "promoted": "first retrained version promoted",
    }
    for kind, text in labels.items():
        if kind in times:
            progress.note(f"{text:<32} {times[kind]:+7.1f} s after the change")
    total = result.change_to_promotion_s
    progress.note(
        f"change -> promotion: {total:.1f} s, unattended (labels arrive "
        f"{Scenario().label_delay_s:.0f} s after each prediction)"
        if total is not None
        else "no promotion within the time limit"
    )
    for version, (rows, accuracy) in sorted(result.accuracy_after_change.items()):
        role = (
            "new champion"
            if version == result.champion
            else ("old champion" if version == result.first_champion else "challenger")
        )
        progress.note(
            f"v{version} ({role}): accuracy {accuracy:.3f} on {rows:,} labelled requests "
            "served after the change"
        )


async def demo(args: argparse.Namespace) -> int:
    progress = Progress()
    print(
        "driftloop demo: serve -> log -> detect drift -> retrain -> gate -> canary -> promote, "
        "with no person in the loop\n",
        flush=True,
    )
    kafka_settings = load_settings(KafkaSettings)
    began = dt.datetime.now(dt.UTC)
    run = str(int(time.time()))
    scenario = Scenario(seed=args.seed, change_after=args.change_after)
    async with kafka(kafka_settings, args.data_dir / "kafka", progress) as bootstrap:
        settings = kafka_settings.model_copy(
            update={"topic_prefix": f"{kafka_settings.topic_prefix}demo-{run}."}
        )
        created = await ensure_topics(settings, bootstrap)
        names = TopicNames(settings.topic_prefix)
        clickhouse_settings = _clickhouse_settings(args.data_dir, run)
        clickhouse = await open_clickhouse(clickhouse_settings)
        where = "server" if clickhouse_settings.url else f"embedded, in {clickhouse_settings.path}"
        progress.step(
            2,
            f"Topics: created {len(created)} with prefix {settings.topic_prefix!r}; ClickHouse "
            f"({where}): database {clickhouse.database!r} created for this run",
        )
        token = SecretStr(secrets.token_urlsafe(24))
        artifacts = LocalArtifactStore(args.data_dir / "artifacts")
        producer = EventProducer(settings, bootstrap)
        await producer.start()
        try:
            async with running_services(
                settings, bootstrap, clickhouse, artifacts, token, overrides=OVERRIDES
            ) as services:
                ports = services.ports
                progress.step(
                    3,
                    f"Services: gateway 127.0.0.1:{ports.gateway}, inference "
                    f"127.0.0.1:{ports.inference}, drift 127.0.0.1:{ports.drift}, retrainer "
                    f"and registry 127.0.0.1:{ports.retrainer} (admin token generated for this "
                    "run)",
                )
                async with DriftloopClient(services.client_settings("demo")) as client:
                    first = await first_champion(
                        services, client, args.data_dir / "train.csv", args.seed
                    )
                    accuracy = next(m.value for m in first.metrics if m.name == "accuracy")
                    progress.step(
                        4,
                        f"{MODEL} v{first.version} trained on {first.data.row_count:,} customers "
                        f"(holdout accuracy {accuracy:.3f}): champion, stable version, and a "
                        "training policy (retrain on concept drift or a labelled accuracy "
                        "drop; canary 10% -> 50% -> 100%)",
                    )
                    progress.step(
                        5,
                        f"Traffic: {scenario.requests_per_s:.0f} requests/s through the "
                        f"gateway, {scenario.label_share:.0%} labelled "
                        f"{scenario.label_delay_s:.0f} s later; "
                        f"the world changes after {scenario.change_after:,} requests. From here "
                        "nobody intervenes:",
                    )
                    result = await run_loop(
                        services,
                        client,
                        producer,
                        names,
                        clickhouse,
                        first.version,
                        scenario,
                        progress.stage,
                    )
                    progress.step(
                        6,
                        f"The loop closed: v{result.first_champion} -> v{result.champion} "
                        f"({result.requests:,} requests, {result.labels:,} labels)"
                        if result.champion != result.first_champion
                        else "The loop did not close in time",
                    )
                    summarise(result, progress)
                    history = await client.alias_history(MODEL, "champion")
                    for move in history:
                        progress.note(f"champion -> v{move.version} by {move.actor}: {move.reason}")
                    report = await gather(client, MODEL, began, dt.datetime.now(dt.UTC))
                    path = await asyncio.to_thread(
                        write_report, args.data_dir / "report.html", report
                    )
                    progress.note(f"report: {path} (one HTML file, open it in a browser)")
        finally:
            await producer.stop()
            await clickhouse.close()
    print(f"\ndone in {time.monotonic() - progress.started:.1f} s.", flush=True)
    return 0 if result.champion != result.first_champion else 1
