"""`driftloop drift ...`: drift reports, baselines, alerts and canary analysis."""

from __future__ import annotations

import argparse
import datetime as dt
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from driftloop.cli.calls import as_dict, print_json, show, table, with_client

if TYPE_CHECKING:  # the client and gRPC are imported when a command runs
    from driftloop.client import DriftloopClient
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
