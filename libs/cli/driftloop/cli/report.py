"""`driftloop report`: one self-contained HTML page about a model, from the services.

Where each part comes from: the drift service's GetModelHistory (traffic per version,
PSI per feature, labelled quality and label coverage, from the prediction log and the
stored drift windows; the rollouts started, canary steps, promotions and rollbacks, from
the model events it stores) and ListAlerts; the registry's champion alias history
(promotions and moves by hand); the retrainer's runs with their gate verdicts. A source
that cannot be read leaves its sections saying why; the page is still written.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import re
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from driftloop.cli.calls import EXIT_FAILED, print_json

if TYPE_CHECKING:  # the client, gRPC and the page are imported when the command runs
    from driftloop.cli.report_page import ReportData
    from driftloop.client import DriftloopClient

T = TypeVar("T")
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
        "gate verdicts. Reads the drift service, the registry and the retrainer. "
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


async def gather(
    client: DriftloopClient, model: str, start: dt.datetime, end: dt.datetime
) -> ReportData:
    """Everything the page shows, read at once; each source that fails is noted."""
    import grpc

    from driftloop.cli.report_page import ReportData

    data = ReportData(model, start, end, generated=dt.datetime.now(dt.UTC))

    async def read(source: str, call: Awaitable[T]) -> T | None:
        try:
            return await call
        except grpc.aio.AioRpcError as error:
            data.missing[source] = f"{error.code().name}: {error.details()}"
        return None

    history, alerts, moves, runs = await asyncio.gather(
        read("history", client.model_history(model, start, end)),
        read("alerts", client.drift_alerts(model, MAX_LISTED, start, end)),
        read("champion", client.alias_history(model, "champion")),
        read("runs", client.retrain_runs(model, MAX_LISTED)),
    )
    if history is not None:
        data.history = history
    data.alerts = alerts or []
    data.champion_moves = moves or []
    data.runs = runs or []
    return data


def write_report(path: Path, data: ReportData) -> Path:
    """Write the page (creating the folder); return the file's absolute path."""
    from driftloop.cli.report_page import render

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(data), encoding="utf-8")
    return path.resolve()


async def run_report(args: argparse.Namespace) -> int:
    if not args.hours > 0:
        print(f"driftloop: --hours must be positive, not {args.hours}", file=sys.stderr)
        return EXIT_FAILED
    end = dt.datetime.now(dt.UTC)
    start = end - dt.timedelta(hours=args.hours)
    from driftloop.client import ClientSettings, DriftloopClient
    from driftloop.kit.settings import load_settings

    async with DriftloopClient(load_settings(ClientSettings)) as client:
        data = await gather(client, args.model, start, end)
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
    if args.json:
        print_json({"path": str(path), "model": args.model, "missing": data.missing})
    else:
        print(f"report written to {path}")
    return 0
