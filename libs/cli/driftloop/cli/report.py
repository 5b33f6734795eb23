"""`driftloop report`: one self-contained HTML page about a model, from the services.

Where each part comes from: the drift service's GetModelHistory (traffic per version,
PSI per feature, labelled quality and label coverage, from the prediction log and the
stored drift windows) and ListAlerts; the registry's champion alias history
(promotions); the retrainer's runs with their gate verdicts; and the model-events topic
for the canary steps and rollbacks (the gateway announces them there and keeps no
history of its own), read from the window's start to its end when Kafka is configured.
A source that cannot be read leaves its sections saying why; the page is still written.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import re
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import grpc
from aiokafka.errors import KafkaError

from driftloop.cli.calls import EXIT_FAILED
from driftloop.cli.report_page import ReportData, render
from driftloop.client import ClientSettings, DriftloopClient
from driftloop.kafka.codecs import decode_model_event
from driftloop.kafka.replay import read_since
from driftloop.kafka.topics import TopicNames
from driftloop.kit.settings import KafkaSettings, load_settings
from driftloop.v1 import events_pb2

T = TypeVar("T")
ModelEvents = Callable[[dt.datetime], Awaitable[list[events_pb2.ModelEvent]]]
# ListAlerts and ListRetrainRuns answer at most this many.
MAX_LISTED = 1000
# The services' sources: when none answers there is nothing to report.
SERVICE_SOURCES = ("history", "alerts", "champion", "runs")


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    report = sub.add_parser(
        "report",
        help="write a model's report: one HTML file that opens offline",
        description="Write one self-contained HTML page about a model over the last H hours: "
        "traffic per version, drift per feature against the PSI thresholds, accuracy and "
        "label coverage, canary steps, promotions and rollbacks, retraining runs with their "
        "gate verdicts. Reads the drift service, the registry and retrainer, and the "
        "model-events topic (DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS). "
        "Example: driftloop report --model churn --hours 6 --out churn.html",
    )
    report.add_argument("--model", required=True)
    report.add_argument(
        "--out", type=Path, help="the file to write (default: driftloop-report-MODEL.html)"
    )
    report.add_argument(
        "--hours", type=float, default=24.0, help="the window: the last H hours (default 24)"
    )
    report.set_defaults(run=run_report)


def kafka_model_events(settings: KafkaSettings, bootstrap_servers: str) -> ModelEvents:
    """The model-events topic's events since an instant, read once."""

    async def read(since: dt.datetime) -> list[events_pb2.ModelEvent]:
        topic = TopicNames(settings.topic_prefix).model_events
        replayed = await read_since(settings, bootstrap_servers, topic, decode_model_event, since)
        return [e for e in replayed.events if isinstance(e, events_pb2.ModelEvent)]

    return read


async def gather(
    client: DriftloopClient,
    model: str,
    start: dt.datetime,
    end: dt.datetime,
    model_events: ModelEvents | None,
) -> ReportData:
    """Everything the page shows, read at once; each source that fails is noted."""
    data = ReportData(model, start, end, generated=dt.datetime.now(dt.UTC))

    async def read(source: str, call: Awaitable[T]) -> T | None:
        try:
            return await call
        except grpc.aio.AioRpcError as error:
            data.missing[source] = f"{error.code().name}: {error.details()}"
        except (KafkaError, TimeoutError, OSError) as error:
            data.missing[source] = f"{type(error).__name__}: {error}"
        return None

    async def no_kafka() -> list[events_pb2.ModelEvent]:
        data.missing["rollouts"] = (
            "Kafka is not configured (DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS): canary steps and "
            "rollbacks are read from the model-events topic"
        )
        return []

    history, alerts, moves, runs, events = await asyncio.gather(
        read("history", client.model_history(model, start, end)),
        read("alerts", client.drift_alerts(model, MAX_LISTED, start, end)),
        read("champion", client.alias_history(model, "champion")),
        read("runs", client.retrain_runs(model, MAX_LISTED)),
        read("rollouts", model_events(start) if model_events else no_kafka()),
    )
    if history is not None:
        data.history = history
    data.alerts = alerts or []
    data.champion_moves = moves or []
    data.runs = runs or []
    data.model_events = [e for e in events or [] if e.model == model]
    return data


def write_report(path: Path, data: ReportData) -> Path:
    """Write the page (creating the folder); return the file's absolute path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(data), encoding="utf-8")
    return path.resolve()


async def run_report(args: argparse.Namespace) -> int:
    if not args.hours > 0:
        print(f"driftloop: --hours must be positive, not {args.hours}", file=sys.stderr)
        return EXIT_FAILED
    end = dt.datetime.now(dt.UTC)
    start = end - dt.timedelta(hours=args.hours)
    kafka = load_settings(KafkaSettings)
    events = kafka_model_events(kafka, kafka.bootstrap_servers) if kafka.bootstrap_servers else None
    async with DriftloopClient(load_settings(ClientSettings)) as client:
        data = await gather(client, args.model, start, end, events)
    if all(source in data.missing for source in SERVICE_SOURCES):
        print(
            f"driftloop: no service answered ({data.missing['history']}); is the stack "
            "running, and do DRIFTLOOP_*_TARGET point at it?",
            file=sys.stderr,
        )
        return EXIT_FAILED
    for source, why in data.missing.items():
        print(f"driftloop: warning: {source} could not be read: {why}", file=sys.stderr)
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", args.model)
    path = await asyncio.to_thread(
        write_report, args.out or Path(f"driftloop-report-{safe}.html"), data
    )
    print(f"report written to {path}")
    return 0
