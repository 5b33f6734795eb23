"""`driftloop shadow ...` and `driftloop ab ...`: the shadow service's evidence from a shell.

`shadow compare MODEL VERSION` shows a shadow version against live on the same requests;
`shadow status` how far behind the shadow service is; `ab report MODEL` every A/B variant
of a model against the control. Every command takes --json (the API's message as JSON
on stdout, nothing else); a refused call is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
from typing import TYPE_CHECKING

from driftloop.cli.calls import print_json, table, with_client

if TYPE_CHECKING:  # the client and gRPC are imported when a command runs
    from driftloop.client import DriftloopClient
    from driftloop.v1 import shadow_pb2


def _since(minutes: float) -> dt.datetime | None:
    return dt.datetime.now(dt.UTC) - dt.timedelta(minutes=minutes) if minutes else None


def _number(value: float, digits: int = 4) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def comparison_text(c: shadow_pb2.ShadowComparison) -> str:
    lines = [
        f"{c.model} v{c.shadow_version} (shadow) against v{c.live_version or '-'} (live): "
        f"{c.compared:,} requests compared",
        f"  agreement       {_number(c.agreement)} "
        f"(95% CI {_number(c.agreement_low)} to {_number(c.agreement_high)})",
        f"  output          shadow - live: mean {_number(c.mean_diff)}, mean |diff| "
        f"{_number(c.mean_abs_diff)}, p05/p50/p95 {_number(c.diff_p05)} / "
        f"{_number(c.diff_p50)} / {_number(c.diff_p95)}",
        f"  latency         p50 {c.live_p50_latency_ms:.1f} -> {c.shadow_p50_latency_ms:.1f} ms, "
        f"p99 {c.live_p99_latency_ms:.1f} -> {c.shadow_p99_latency_ms:.1f} ms",
        f"  errors          live {c.live_error_rate:.2%}, shadow {c.shadow_error_rate:.2%}",
        f"  labelled        {c.labelled:,}: {c.metric or 'quality'} live "
        f"{_number(c.live_metric)}, shadow {_number(c.shadow_metric)}; effect "
        f"{_number(c.effect)} (95% CI {_number(c.effect_low)} to {_number(c.effect_high)}), "
        f"{c.test or 'test'} p {c.p_value:.3g}",
        f"  verdict         {c.verdict}",
    ]
    if c.skipped:
        lines.append(
            f"  skipped         {c.skipped:,} shadow calls while behind "
            f"({c.skipped_share:.1%}; lag now {c.lag_s:.1f} s)"
        )
    if c.segments:
        lines.append("  where they disagree most:")
        rows = [
            (s.feature, s.value, f"{s.compared:,}", f"{s.disagreement:.1%}") for s in c.segments
        ]
        body = table(("feature", "value", "compared", "disagreement"), rows)
        lines += ["    " + line for line in body.splitlines()]
    return "\n".join(lines)


def ab_text(report: shadow_pb2.ABReport) -> str:
    rows = [
        (
            v.variant,
            f"v{v.version}",
            f"{v.requests:,}",
            f"{v.units:,}",
            f"{v.error_rate:.2%}",
            f"{v.p99_latency_ms:.1f}",
            f"{v.labelled:,}",
            f"{_number(v.metric)} [{_number(v.metric_low)}, {_number(v.metric_high)}]",
        )
        for v in report.variants
    ]
    lines = [f"{report.model}: A/B by variant ({report.metric or 'quality'}, units = entity keys)"]
    header = ("variant", "version", "requests", "units", "errors", "p99 ms", "labelled", "metric")
    lines += ["  " + line for line in table(header, rows).splitlines()]
    for c in report.comparisons:
        lines.append(
            f"  {c.variant} - {c.control}: {_number(c.difference)} (95% CI {_number(c.ci_low)} "
            f"to {_number(c.ci_high)}, p {c.p_value:.3g}; always-valid p {c.always_valid_p:.3g}); "
            f"design effect {c.design_effect:.2f}; {c.required_labelled:,} labelled rows per "
            f"variant to detect the minimum effect; decision: {c.decision}"
        )
    return "\n".join(lines)


async def run_compare(args: argparse.Namespace) -> int:
    async def work(client: DriftloopClient) -> None:
        comparison = await client.shadow_comparison(
            args.model, args.version, start=_since(args.minutes)
        )
        print_json(comparison) if args.json else print(comparison_text(comparison))

    return await with_client(work)


async def run_status(args: argparse.Namespace) -> int:
    async def work(client: DriftloopClient) -> None:
        status = await client.shadow_status()
        if args.json:
            print_json(status)
        else:
            print(
                f"answered {status.answered:,}, failed {status.failed:,}, skipped "
                f"{status.skipped:,} ({status.skipped_share:.1%}); lag {status.lag_s:.1f} s"
            )

    return await with_client(work)


async def run_ab(args: argparse.Namespace) -> int:
    async def work(client: DriftloopClient) -> None:
        report = await client.ab_report(
            args.model,
            start=_since(args.minutes),
            min_effect=args.min_effect,
            control=args.control,
        )
        print_json(report) if args.json else print(ab_text(report))

    return await with_client(work)


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    shadow = sub.add_parser(
        "shadow",
        help="shadow versions against live on the same requests (the shadow service)",
        description="The shadow service (DRIFTLOOP_SHADOW_TARGET).\n\nexample:\n"
        "  driftloop shadow compare churn 7 --minutes 30",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = shadow.add_subparsers(dest="action", required=True)
    compare = actions.add_parser(
        "compare",
        help="a shadow version against live: agreement, outputs, latency, errors, accuracy",
        description="example: driftloop shadow compare churn 7 --minutes 30 --json",
    )
    compare.add_argument("model", metavar="MODEL")
    compare.add_argument("version", metavar="VERSION", help="the shadow version")
    compare.add_argument(
        "--minutes", type=float, default=0, help="the last N minutes (default: the last hour)"
    )
    compare.add_argument("--json", action="store_true", help="the comparison as JSON")
    compare.set_defaults(run=run_compare)
    status = actions.add_parser(
        "status",
        help="how many shadow calls were answered, failed or skipped, and the lag",
        description="example: driftloop shadow status --json",
    )
    status.add_argument("--json", action="store_true", help="the status as JSON")
    status.set_defaults(run=run_status)

    ab = sub.add_parser(
        "ab",
        help="A/B test results per variant, with intervals that respect sticky keys",
        description="The shadow service's A/B report (DRIFTLOOP_SHADOW_TARGET).\n\nexample:\n"
        "  driftloop ab report churn --minutes 60 --min-effect 0.02",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ab_actions = ab.add_subparsers(dest="action", required=True)
    report = ab_actions.add_parser(
        "report",
        help="every variant against the control over a window",
        description="example: driftloop ab report churn --control a --json",
    )
    report.add_argument("model", metavar="MODEL")
    report.add_argument(
        "--minutes", type=float, default=0, help="the last N minutes (default: the last hour)"
    )
    report.add_argument(
        "--min-effect",
        type=float,
        default=0.0,
        help="the smallest difference worth detecting (default 0.02): the sample size still "
        "needed is computed for it",
    )
    report.add_argument("--control", default="", help="the control variant (default: first)")
    report.add_argument("--json", action="store_true", help="the report as JSON")
    report.set_defaults(run=run_ab)
