"""`driftloop drift ...`: drift reports, baselines, alerts and canary analysis."""

from __future__ import annotations

import argparse
import datetime as dt
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from driftloop.cli.calls import UsageError, as_dict, print_json, show, table, with_client
from driftloop.cli.models import iso_time

if TYPE_CHECKING:  # the client and gRPC are imported when a command runs
    from driftloop.client import DriftloopClient
    from driftloop.drift.evaluation import Evaluation
    from driftloop.models.baseline import Baseline
    from driftloop.models.table import Column
    from driftloop.v1 import drift_pb2, registry_pb2


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    drift = sub.add_parser("drift", help="drift reports, baselines, alerts, canary analysis")
    actions = drift.add_subparsers(dest="action", required=True)

    report = actions.add_parser("report", help="a version's drift report (a table; --json)")
    report.add_argument("--model", required=True)
    report.add_argument("--version", required=True, help="a version number or an alias")
    report.add_argument("--last", type=int, default=0, help="the last N predictions")
    report.add_argument("--hours", type=float, default=0, help="or the last H hours")
    report.set_defaults(run=run_report)

    baseline = actions.add_parser("baseline", help="a version's frozen baseline")
    baseline.add_argument("--model", required=True)
    baseline.add_argument("--version", required=True)
    baseline.set_defaults(run=run_baseline)

    alerts = actions.add_parser("alerts", help="a model's drift alerts, newest first")
    alerts.add_argument("--model", required=True)
    alerts.add_argument("--limit", type=int, default=20)
    alerts.set_defaults(run=run_alerts)

    canary = actions.add_parser("canary", help="candidate against stable over the same window")
    canary.add_argument("--model", required=True)
    canary.add_argument("--stable", required=True)
    canary.add_argument("--candidate", required=True)
    canary.add_argument("--hours", type=float, default=1.0, help="the window: the last H hours")
    canary.set_defaults(run=run_canary)

    evaluate = actions.add_parser(
        "evaluate",
        help="replay a stream with injected drifts: each detector's delay and false alarms",
        description="Replay a stream of feature rows with injected drifts and print, per "
        "drift, each online detector's detection (yes/no), delay in events after the onset "
        "(the alarming event included) and false alarms before the onset (and per 10,000 "
        "stable events): driftloop's (the drift service's own, over a baseline from the "
        "reference rows) and, when river is installed, its ADWIN and Page-Hinkley on the "
        "drifted feature. The stream: a file (--data: .csv, .parquet or .jsonl; its first "
        "--reference-rows rows are the reference unless --reference gives one), or a model "
        "version's logged predictions in ClickHouse (--model, --version, --since, --until; "
        "the version's registered baseline is the reference; a ClickHouse server, "
        "DRIFTLOOP_CLICKHOUSE_URL, as the running stack holds an embedded one). Kinds: "
        "shift (size in reference standard deviations, default 1), scale (variance factor, "
        "default 2), "
        "constant (the value, default the reference mean), missing (share, default 0.5), "
        "category (a new category's share, default 0.2); onset defaults to the middle of "
        "the stream. Progress goes to stderr."
        "\n\nexample:\n  driftloop drift evaluate --data rows.parquet "
        '--inject "feature=x3,kind=shift,size=0.5,onset=5000" '
        '--inject "feature=plan,kind=category,size=0.1"',
    )
    evaluate.add_argument("--data", type=Path, help="the stream: a .csv, .parquet or .jsonl file")
    evaluate.add_argument(
        "--reference",
        type=Path,
        help="reference rows for the baseline (default: the first --reference-rows of --data)",
    )
    evaluate.add_argument(
        "--reference-rows", type=int, default=2000, help="rows of --data used as the reference"
    )
    evaluate.add_argument("--model", help="with --version: replay the model's logged features")
    evaluate.add_argument("--version", help="a version number (with --model)")
    evaluate.add_argument(
        "--since", type=iso_time, help="with --model: from this time (ISO 8601, UTC unless it says)"
    )
    evaluate.add_argument(
        "--until", type=iso_time, help="with --model: up to this time (default: now)"
    )
    evaluate.add_argument(
        "--inject",
        action="append",
        required=True,
        metavar="SPEC",
        help="feature=NAME,kind=shift|scale|constant|missing|category,size=X,onset=N "
        "(repeatable; each drift is replayed on its own)",
    )
    evaluate.add_argument(
        "--false-alarm-events",
        type=float,
        default=10_000_000,
        help="driftloop's budget: stable events between false alarms of the model, as "
        "DRIFTLOOP_DRIFT_ONLINE_FALSE_ALARM_EVENTS sets it in the service",
    )
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the injected randomness")
    evaluate.add_argument("--no-river", action="store_true", help="driftloop's detector only")
    evaluate.set_defaults(run=run_evaluate)


def format_report(report: drift_pb2.DriftReport) -> str:
    found = [
        name
        for name, flag in (
            ("data", report.data_drift),
            ("prediction", report.prediction_drift),
            ("concept", report.concept_drift),
        )
        if flag
    ]
    lines = [
        f"{report.model.model} v{report.model.version}: {report.rows:,} rows, "
        f"{report.labelled_rows:,} labelled; drift: {', '.join(found) or 'none'} "
        f"(drifted share {report.drifted_share:.0%})"
    ]
    if report.baseline_missing:
        lines.append(
            "  no drift baseline: this version was registered without reference data "
            "(driftloop models register --reference-data), so no feature or prediction "
            "drift is computed"
        )
    lines += [f"  {m.name} {m.value:.4g}" for m in report.performance]
    scores = {(s.feature, s.test): s for s in report.features}
    # Effect: the KS distance D (numbers) or total variation (categories), the share of
    # rows that moved; a feature under PSI 0.1 can drift by it (a slow drift).
    lines.append(
        f"  {'feature':<20} {'PSI':>7} {'effect':>7} {'JS':>7} {'test':>5} {'p':>9}  link    "
        "drifted"
    )
    for cause in report.root_causes:
        psi, js = scores[(cause.feature, "psi")], scores[(cause.feature, "js")]
        test = next(s for (f, t), s in scores.items() if f == cause.feature and t in ("ks", "chi2"))
        effect = scores.get((cause.feature, "tvd"), test)
        link = "" if math.isnan(cause.performance_link) else f"{cause.performance_link:+.3f}"
        lines.append(
            f"  {cause.feature:<20} {psi.score:7.3f} {effect.score:7.3f} {js.score:7.3f} "
            f"{test.test:>5} {psi.p_value:9.2g}  {link:<7} {'yes' if psi.drifted else ''}"
        )
    if report.HasField("prediction"):
        p = report.prediction
        lines.append(
            f"  {'(output)':<20} {p.score:7.3f} {'':>7} {'':>7} {'ks':>5} {p.p_value:9.2g}  "
            f"{'':<7} {'yes' if p.drifted else ''}"
        )
    return "\n".join(lines)


async def run_report(args: argparse.Namespace) -> int:
    async def work(client: DriftloopClient) -> None:
        end = dt.datetime.now(dt.UTC)
        start = end - dt.timedelta(hours=args.hours) if args.hours else None
        report = await client.drift_report(
            args.model, args.version, last_n=args.last, start=start, end=end
        )
        show(args.json, report, lambda: format_report(report))

    return await with_client(work)


# Categories a line of the baseline shows, the most frequent first.
SHOWN_CATEGORIES = 5


def _shares(categories: Sequence[str], frequencies: Sequence[float]) -> str:
    ranked = sorted(zip(categories, frequencies, strict=False), key=lambda item: -item[1])
    shown = [f"{name} {share:.0%}" for name, share in ranked[:SHOWN_CATEGORIES]]
    if len(ranked) > SHOWN_CATEGORIES:
        shown.append(f"... ({len(ranked) - SHOWN_CATEGORIES} more)")
    return ", ".join(shown)


def format_baseline(model: str, version: str, baseline: registry_pb2.Baseline) -> str:
    """A frozen baseline as a person reads it: each numeric feature's mean, spread, missing
    share and bins, each categorical one's commonest categories, the output's, and the
    holdout metrics the labelled windows are compared with (--json has every number)."""
    numeric, categorical = baseline.numeric, baseline.categorical
    lines = [
        f"{model} v{version} baseline: {len(numeric)} numeric, {len(categorical)} categorical "
        "features"
    ]
    if not numeric and not categorical and not baseline.HasField("output"):
        return lines[0] + " (registered without reference data: no drift is computed)"
    rows = [
        [f.feature, f"{f.mean:.4g}", f"{f.std:.4g}", f"{f.nan_share:.1%}", str(len(f.edges) + 1)]
        for f in numeric
    ]
    if baseline.HasField("output"):
        out = baseline.output
        rows.append(
            ["(output)", f"{out.mean:.4g}", f"{out.std:.4g}", f"{out.nan_share:.1%}",
             str(len(out.edges) + 1)]
        )  # fmt: skip
    if rows:
        header = ["feature", "mean", "std", "missing", "bins"]
        lines += ["  " + line for line in table(header, rows).splitlines()]
    for feature in categorical:
        lines.append(f"  {feature.feature}: {_shares(feature.categories, feature.frequencies)}")
    if baseline.HasField("output_labels"):
        labels = baseline.output_labels
        lines.append(f"  (predicted labels): {_shares(labels.categories, labels.frequencies)}")
    if baseline.holdout_metrics:
        metrics = ", ".join(f"{m.name} {m.value:.4g}" for m in baseline.holdout_metrics)
        lines.append(f"  holdout: {metrics}")
    return "\n".join(lines)


async def run_baseline(args: argparse.Namespace) -> int:
    async def work(client: DriftloopClient) -> None:
        baseline = await client.baseline(args.model, args.version)
        show(args.json, baseline, lambda: format_baseline(args.model, args.version, baseline))

    return await with_client(work)


async def run_alerts(args: argparse.Namespace) -> int:
    from driftloop.v1 import events_pb2

    async def work(client: DriftloopClient) -> None:
        alerts = await client.drift_alerts(args.model, args.limit)
        if args.json:
            print_json({"alerts": [as_dict(alert) for alert in alerts]})
            return
        for alert in alerts:
            kind = events_pb2.DriftKind.Name(alert.kind).removeprefix("DRIFT_KIND_").lower()
            severity = events_pb2.Severity.Name(alert.severity).removeprefix("SEVERITY_").lower()
            # Each alert as it stands: open, updated (revision n) or closed.
            state = events_pb2.AlertState.Name(alert.state).removeprefix("ALERT_STATE_").lower()
            state = "open" if state == "unspecified" else state
            at = alert.time.ToDatetime(dt.UTC)
            print(
                f"{at:%Y-%m-%d %H:%M:%S} v{alert.version} {kind} {severity} {state} "
                f"(alert {alert.alert_id}, revision {alert.revision}): {alert.summary}"
            )

    return await with_client(work)


def _measured(value: float, spec: str) -> str:
    return "-" if math.isnan(value) else format(value, spec)


def format_canary(model: str, hours: float, analysis: drift_pb2.CanaryAnalysis) -> str:
    """A canary analysis as a person reads it: the verdict, each version's traffic and
    quality side by side, the output distance, the credible range of the quality
    difference, and the reasons."""
    from driftloop.v1 import drift_pb2

    verdict = drift_pb2.Verdict.Name(analysis.verdict).removeprefix("VERDICT_").lower()
    stable, candidate = analysis.stable, analysis.candidate
    early = " (the labelled evidence is enough to pass early)"
    lines = [
        f"{model}: candidate {candidate.version} against stable {stable.version} over the last "
        f"{hours:g} h: {verdict}{early if analysis.evidence_sufficient else ''}"
    ]
    header = ["version", "requests", "errors", "p99 ms", "labelled", "accuracy"]
    rows = [
        [f"{stats.version} ({role})", f"{stats.requests:,}", f"{stats.error_rate:.2%}",
         f"{stats.p99_latency_ms:.1f}", f"{stats.labelled:,}", _measured(stats.accuracy, ".4f")]
        for role, stats in (("stable", stable), ("candidate", candidate))
    ]  # fmt: skip
    lines += ["  " + line for line in table(header, rows).splitlines()]
    lines.append(f"  output distance (Jensen-Shannon): {analysis.output_distance:.4f}")
    low, high = analysis.quality_difference_low, analysis.quality_difference_high
    if not (math.isnan(low) or math.isnan(high)):
        lines.append(f"  quality difference (candidate - stable): {low:+.4f} to {high:+.4f}")
    lines += [f"  - {reason}" for reason in analysis.reasons]
    return "\n".join(lines)


async def run_canary(args: argparse.Namespace) -> int:
    async def work(client: DriftloopClient) -> None:
        since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=args.hours)
        analysis = await client.analyze_canary(args.model, args.stable, args.candidate, since)
        show(args.json, analysis, lambda: format_canary(args.model, args.hours, analysis))

    return await with_client(work)


def format_evaluations(evaluations: Sequence[Evaluation], events: int) -> str:
    """Each injected drift and, per detector, whether it was detected, after how many
    events, and its false alarms before the onset (also per 10,000 stable events)."""
    lines = []
    for evaluation in evaluations:
        onset = evaluation.injection.onset
        lines.append(
            f"{evaluation.injection.label()} ({events:,} events replayed, {onset:,} before "
            "the onset)"
        )
        header = ["detector", "detected", "delay", "false alarms", "per 10k stable"]
        rows = [
            [o.detector, "yes" if o.detected else "no", "-" if o.delay is None else f"{o.delay:,}",
             str(o.false_alarms), _measured(o.false_alarms_per_10k, ".2f")]
            for o in evaluation.outcomes
        ]  # fmt: skip
        lines += ["  " + line for line in table(header, rows).splitlines()]
        lines += [f"  note: {note}" for note in evaluation.notes]
    return "\n".join(lines)


def evaluations_json(evaluations: Sequence[Evaluation], events: int) -> dict[str, Any]:
    return {
        "events": events,
        "evaluations": [
            {
                "injection": {
                    "feature": e.injection.feature,
                    "kind": e.injection.kind,
                    "size": None if math.isnan(e.injection.size) else e.injection.size,
                    "onset": e.injection.onset,
                },
                "outcomes": [
                    {
                        "detector": o.detector,
                        "detected": o.detected,
                        "delay": o.delay,
                        "false_alarms": o.false_alarms,
                        "stable_events": o.stable_events,
                        "false_alarms_per_10k": (
                            None if math.isnan(o.false_alarms_per_10k) else o.false_alarms_per_10k
                        ),
                    }
                    for o in e.outcomes
                ],
                "notes": e.notes,
            }
            for e in evaluations
        ],
    }


class _Progress:
    """Replay progress on stderr, every 10% of a long replay (100,000 events or more)."""

    def __init__(self, injections: int) -> None:
        self.injections, self.injection, self._shown = injections, 0, -1

    def __call__(self, done: int, total: int) -> None:
        if total < 100_000:
            return
        if done <= 1000:  # a new replay
            self.injection, self._shown = self.injection + 1, -1
        tenth = done * 10 // total
        if tenth != self._shown:
            self._shown = tenth
            print(
                f"replay {self.injection}/{self.injections}: {done:,} of {total:,} events",
                file=sys.stderr,
                flush=True,
            )


async def run_evaluate(args: argparse.Namespace) -> int:
    import asyncio

    from driftloop.drift.evaluation import evaluate, parse_injection

    if (args.data is None) == (args.model is None):
        raise UsageError("drift evaluate: give --data FILE, or --model and --version")
    if args.data is not None:
        baseline, stream = await asyncio.to_thread(_file_stream, args)
    else:
        if args.version is None or args.since is None:
            raise UsageError("drift evaluate: --model needs --version and --since")
        baseline, stream = await _logged_stream(args)
    events = len(next(iter(stream.values()))) if stream else 0
    if events == 0:
        raise UsageError("drift evaluate: the stream has no rows after the reference")
    injections = [parse_injection(text, events) for text in args.inject]
    results = await asyncio.to_thread(
        evaluate,
        baseline,
        stream,
        injections,
        args.false_alarm_events,
        args.seed,
        not args.no_river,
        _Progress(len(injections)),
    )
    if args.json:
        print_json(evaluations_json(results, events))
    else:
        print(format_evaluations(results, events))
    return 0


def _file_stream(args: argparse.Namespace) -> tuple[Baseline, dict[str, Column]]:
    """The baseline (of --reference, or of the first --reference-rows) and the stream."""
    import numpy as np

    from driftloop.drift.evaluation import reference_of
    from driftloop.models.table import read_table

    data = read_table(args.data).columns
    if args.reference is not None:
        return reference_of(read_table(args.reference).columns, args.seed), dict(data)
    rows = len(next(iter(data.values())))
    if not 0 < args.reference_rows < rows:
        raise UsageError(
            f"drift evaluate: --reference-rows {args.reference_rows}: {args.data.name} has "
            f"{rows:,} rows; give fewer, or a --reference file"
        )
    head = np.arange(args.reference_rows)
    reference = {name: column[head] for name, column in data.items()}
    stream = {name: column[args.reference_rows :] for name, column in data.items()}
    return reference_of(reference, args.seed), stream


async def _logged_stream(args: argparse.Namespace) -> tuple[Baseline, dict[str, Column]]:
    """The version's registered baseline (from the drift service) and its logged
    features in [--since, --until), in prediction-time order (PredictionLog.features)."""
    import numpy as np

    from driftloop.clickhouse.client import open_clickhouse
    from driftloop.clickhouse.prediction_log import PredictionLog
    from driftloop.kit.settings import ClickHouseSettings, load_settings
    from driftloop.models.convert import baseline_from_proto

    found: list[registry_pb2.Baseline] = []

    async def work(client: DriftloopClient) -> None:
        found.append(await client.baseline(args.model, args.version))

    await with_client(work)
    baseline = baseline_from_proto(found[0])
    numeric = [b.feature for b in baseline.numeric]
    categorical = [c.feature for c in baseline.categorical]
    if not numeric and not categorical:
        raise UsageError(
            f"drift evaluate: {args.model} v{args.version} has no baseline (registered without "
            "reference data)"
        )
    until = args.until or dt.datetime.now(dt.UTC)
    clickhouse = await open_clickhouse(load_settings(ClickHouseSettings))
    try:
        columns = await PredictionLog(clickhouse).features(
            args.model, args.version, numeric, categorical, args.since, until
        )
    finally:
        await clickhouse.close()
    stream: dict[str, Column] = {}
    for index, name in enumerate(numeric):
        stream[name] = np.asarray(columns[f"n{index}"], dtype=np.float64)
    for index, name in enumerate(categorical):
        stream[name] = np.asarray(columns[f"c{index}"], dtype=np.str_)
    return baseline, stream
