"""The model report as one self-contained HTML page: traffic per version, drift per feature
against the PSI thresholds, labelled quality and label coverage, rollouts (canary steps,
promotions, rollbacks) and retraining runs with their gate verdicts.

A pure function of what `driftloop.cli.report` gathered. The page loads nothing (inline
CSS, SVG drawn by `driftloop.cli.charts`, no script; its Content-Security-Policy forbids
every fetch and every script), so it opens offline and a string that slipped through
could not run. Every string from the services is escaped where it is written; a section
without data says so, and one whose source could not be read says why.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from html import escape

from google.protobuf.timestamp_pb2 import Timestamp

from driftloop.cli.charts import Axes, Marker, Point, Rule, Series, line_chart
from driftloop.drift.config import DriftSettings
from driftloop.v1 import drift_pb2, events_pb2, registry_pb2, retrainer_pb2

# The drift service's own PSI levels (defaults of DRIFTLOOP_DRIFT_PSI_THRESHOLD and
# DRIFTLOOP_DRIFT_PSI_MAJOR), so the page, the dashboards and the alerts agree.
PSI_MODERATE: float = DriftSettings.model_fields["psi_threshold"].default
PSI_MAJOR: float = DriftSettings.model_fields["psi_major"].default
EFFECT_MATERIAL: float = DriftSettings.model_fields["effect_threshold"].default
NO_DATA = "no data in this window"
OUTPUT_STREAM = "__output__"
# Drift charts for the features with the highest PSI, at most this many (and the output).
MAX_DRIFT_CHARTS = 12
PALETTE = ("#1f6fb4", "#e8710a", "#2a9d3a", "#8e44ad", "#b5651d", "#d6336c", "#138d90", "#7f7f00")
CANARY_COLOR, PROMOTED_COLOR, ROLLED_BACK_COLOR = "#8e44ad", "#2a9d3a", "#c0392b"
EVENT_COLORS = {
    "promoted": PROMOTED_COLOR,
    "champion moved": PROMOTED_COLOR,
    "rolled back": ROLLED_BACK_COLOR,
}
EVENT_LEGEND = (
    ("rollout started or stepped", CANARY_COLOR),
    ("promoted", PROMOTED_COLOR),
    ("rolled back", ROLLED_BACK_COLOR),
)
SECTIONS = {
    "traffic": "Traffic per version",
    "drift": "Drift per feature",
    "quality": "Accuracy and label coverage",
    "rollouts": "Canary steps, promotions and rollbacks",
    "retraining": "Retraining runs and gate verdicts",
}
# The sources of the page, and the sections each feeds.
SOURCES = {
    "history": ("traffic", "drift", "quality", "rollouts"),
    "alerts": ("drift",),
    "champion": ("rollouts",),
    "runs": ("retraining",),
}
_ROLLOUT_KINDS = {
    events_pb2.MODEL_EVENT_KIND_ROLLOUT_STARTED: "rollout started",
    events_pb2.MODEL_EVENT_KIND_ROLLOUT_STEPPED: "canary step",
    events_pb2.MODEL_EVENT_KIND_PROMOTED: "promoted",
    events_pb2.MODEL_EVENT_KIND_ROLLED_BACK: "rolled back",
}


@dataclass
class ReportData:
    model: str
    start: dt.datetime
    end: dt.datetime
    generated: dt.datetime
    history: drift_pb2.ModelHistory = field(default_factory=drift_pb2.ModelHistory)
    alerts: list[events_pb2.DriftAlert] = field(default_factory=list)
    champion_moves: list[registry_pb2.AliasMove] = field(default_factory=list)
    runs: list[retrainer_pb2.RetrainRun] = field(default_factory=list)
    # A source of SOURCES that could not be read -> why (said in its sections).
    missing: dict[str, str] = field(default_factory=dict)


def seconds(stamp: Timestamp) -> float:
    return stamp.seconds + stamp.nanos / 1e9


def _when(at: float, span: float) -> str:
    moment = dt.datetime.fromtimestamp(at, dt.UTC)
    return moment.strftime("%m-%d %H:%M" if span > 86400 else "%H:%M:%S")


def _moment(at: float) -> str:
    return f"{dt.datetime.fromtimestamp(at, dt.UTC):%Y-%m-%d %H:%M:%S}"


def _stamp_text(stamp: Timestamp) -> str:
    return _moment(seconds(stamp)) if stamp.seconds else ""


def _name(enum_name: str, prefix: str) -> str:
    return enum_name.removeprefix(prefix).replace("_", " ").lower()


def version_order(version: str) -> tuple[int, str]:
    """Version numbers in numeric order (2 before 10)."""
    return len(version), version


def _number(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if math.isfinite(value) else "n/a"


class Page:
    """The page's shared frame: one time axis for every chart, one colour per version."""

    def __init__(self, data: ReportData) -> None:
        self.data = data
        history = data.history
        stamped = [
            *((p.version, p.start) for p in history.traffic),
            *((p.version, p.start) for p in history.quality),
            *((p.version, p.start) for p in history.drift),
        ]
        versions = sorted({version for version, _ in stamped}, key=version_order)
        self.colors = {v: PALETTE[i % len(PALETTE)] for i, v in enumerate(versions)}
        times = [seconds(start) for _, start in stamped]
        bucket = history.bucket_s or 60
        if times:
            self.x_range = (min(times), max(times) + bucket)
        else:
            self.x_range = (data.start.timestamp(), data.end.timestamp())
        span = self.x_range[1] - self.x_range[0]
        self.axes_format: Callable[[float], str] = lambda x: _when(x, span)

    def color(self, version: str) -> str:
        return self.colors.get(version, PALETTE[0])

    def axes(
        self, y_format: Callable[[float], str] = lambda y: f"{y:g}", y_max: float | None = None
    ) -> Axes:
        return Axes(self.x_range, self.axes_format, y_format, y_max)

    def legend(self, versions: Iterable[str], extra: Sequence[tuple[str, str]] = ()) -> str:
        items = [(f"v{v}", self.color(v)) for v in versions] + list(extra)
        return (
            '<ul class="legend">'
            + "".join(
                f'<li><span class="swatch" style="background:{escape(color)}"></span>'
                f"{escape(name)}</li>"
                for name, color in items
            )
            + "</ul>"
        )

    def unavailable(self, section: str) -> str:
        reasons = [
            f"{source}: {why}"
            for source, why in self.data.missing.items()
            if section in SOURCES.get(source, ())
        ]
        return "".join(f'<p class="missing">could not be read: {escape(r)}</p>' for r in reasons)


def _section(key: str, body: str, page: Page) -> str:
    return (
        f'<section id="{key}" data-section="{key}"><h2>{escape(SECTIONS[key])}</h2>'
        f"{page.unavailable(key)}{body}</section>"
    )


def _empty() -> str:
    return f'<p class="empty">{NO_DATA}</p>'


def _table(
    header: Sequence[str], rows: Sequence[Sequence[str]], classes: Sequence[str] = ()
) -> str:
    """A table of escaped cells; `classes` gives a row its class (by position)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        css = f' class="{escape(classes[i])}"' if i < len(classes) and classes[i] else ""
        body.append(f"<tr{css}>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _by_version(points: Iterable[tuple[str, Point]]) -> dict[str, list[Point]]:
    grouped: dict[str, list[Point]] = defaultdict(list)
    for version, point in points:
        grouped[version].append(point)
    return grouped


def _series(page: Page, grouped: dict[str, list[Point]]) -> list[Series]:
    return [
        Series(f"v{version}", page.color(version), sorted(points, key=lambda p: p.x))
        for version, points in sorted(grouped.items(), key=lambda item: version_order(item[0]))
    ]


def _event_markers(page: Page) -> list[Marker]:
    return [
        Marker(at, f"{what} v{version}: {detail}", EVENT_COLORS.get(what, CANARY_COLOR))
        for at, what, version, detail, _ in _rollout_rows(page.data)
    ]


def _kind(alert: events_pb2.DriftAlert) -> str:
    return _name(events_pb2.DriftKind.Name(alert.kind), "DRIFT_KIND_")


def traffic_section(page: Page) -> str:
    history = page.data.history
    if not history.traffic:
        return _section("traffic", _empty(), page)
    bucket = history.bucket_s or 1
    grouped = _by_version(
        (
            p.version,
            Point(
                seconds(p.start),
                p.requests / bucket,
                p.errors > 0,
                f"{p.requests} requests, {p.errors} failed",
            ),
        )
        for p in history.traffic
    )
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for p in history.traffic:
        totals[p.version][0] += p.requests
        totals[p.version][1] += p.errors
    chart = line_chart(
        _series(page, grouped),
        page.axes(lambda y: f"{y:g}/s"),
        label="live requests per second by version",
        markers=_event_markers(page),
    )
    rows = [
        [f"v{v}", f"{n:,}", f"{e:,}", f"{e / n:.2%}" if n else "n/a"]
        for v, (n, e) in sorted(totals.items(), key=lambda item: version_order(item[0]))
    ]
    body = (
        f'<p class="note">live requests per second, in buckets of {bucket} s; vertical lines: '
        "rollout events (hover for what happened)</p>"
        + page.legend(grouped, EVENT_LEGEND)
        + chart
        + _table(["version", "requests", "failed", "failure rate"], rows)
    )
    return _section("traffic", body, page)


def drift_section(page: Page) -> str:
    history = page.data.history
    streams: dict[str, list[drift_pb2.DriftPoint]] = defaultdict(list)
    for p in history.drift:
        streams[p.stream].append(p)
    features = sorted(
        (s for s in streams if s != OUTPUT_STREAM),
        key=lambda s: (-max(p.psi for p in streams[s]), s),
    )[:MAX_DRIFT_CHARTS]
    ordered = [*features, *([OUTPUT_STREAM] if OUTPUT_STREAM in streams else [])]
    parts = [
        f'<p class="note">PSI of each feature against the version\'s training baseline (the '
        f"highest of the windows evaluated in each bucket); dashed lines: {PSI_MODERATE} "
        f"moderate, {PSI_MAJOR} major shift; ringed dots: flagged as drifted (under the "
        f"moderate line: by its effect size, a KS distance or total variation of at least "
        f"{EFFECT_MATERIAL}: a slow drift)</p>"
    ]
    if not ordered:
        parts.append(_empty())
    else:
        parts.append(page.legend(sorted({p.version for p in history.drift}, key=version_order)))
    rules = [
        Rule(PSI_MODERATE, f"{PSI_MODERATE} moderate", "#e8a100"),
        Rule(PSI_MAJOR, f"{PSI_MAJOR} major", "#c0392b"),
    ]
    # Each alert at its open (the list holds each alert as its latest event).
    alert_markers = [
        Marker(
            seconds(a.opened if a.HasField("opened") else a.time),
            f"{_kind(a)} drift alert on v{a.version}: {a.summary}",
            "#c0392b",
        )
        for a in page.data.alerts
    ]
    for stream in ordered:
        grouped = _by_version(
            (
                p.version,
                Point(
                    seconds(p.start),
                    p.psi,
                    p.drifted,
                    f"PSI {p.psi:.3f}" + (" (drifted)" if p.drifted else ""),
                ),
            )
            for p in streams[stream]
        )
        title = "model output (prediction drift)" if stream == OUTPUT_STREAM else stream
        parts.append(f'<h3 class="stream">{escape(title)}</h3>')
        parts.append(
            line_chart(
                _series(page, grouped),
                page.axes(),
                label=f"PSI of {title} by version",
                rules=rules,
                markers=alert_markers,
            )
        )
    if len(streams) - (OUTPUT_STREAM in streams) > MAX_DRIFT_CHARTS:
        parts.append(
            f'<p class="note">the {MAX_DRIFT_CHARTS} features with the highest PSI are drawn</p>'
        )
    parts.append("<h3>Drift alerts</h3>")
    if page.data.alerts:
        rows, classes = [], []
        for alert in sorted(page.data.alerts, key=lambda a: seconds(a.time)):
            severity = _name(events_pb2.Severity.Name(alert.severity), "SEVERITY_")
            state = _name(events_pb2.AlertState.Name(alert.state), "ALERT_STATE_")
            rows.append(
                [
                    _stamp_text(alert.time),
                    f"v{alert.version}",
                    _kind(alert),
                    severity,
                    "open" if state == "unspecified" else state,
                    alert.summary,
                ]
            )
            classes.append(severity)
        parts.append(
            _table(["time (UTC)", "version", "kind", "severity", "state", "summary"], rows, classes)
        )
    else:
        parts.append(_empty())
    return _section("drift", "".join(parts), page)


def quality_section(page: Page) -> str:
    quality = page.data.history.quality
    if not quality:
        return _section("quality", _empty(), page)
    metrics = {p.metric for p in quality if p.labelled}
    metric = metrics.pop() if len(metrics) == 1 else "accuracy"
    metric_points = _by_version(
        (
            p.version,
            Point(
                seconds(p.start),
                p.value,
                note=f"{metric} {_number(p.value)} on {p.labelled} labelled",
            ),
        )
        for p in quality
        if p.metric == metric
    )
    coverage = _by_version(
        (
            p.version,
            Point(
                seconds(p.start),
                p.labelled / p.answered if p.answered else math.nan,
                note=f"{p.labelled} of {p.answered} answered requests labelled",
            ),
        )
        for p in quality
    )
    parts = [page.legend(sorted(coverage, key=version_order))]
    if any(math.isfinite(p.y) for points in metric_points.values() for p in points):
        y_max = 1.0 if metric == "accuracy" else None
        parts.append(f"<h3>{escape(metric)} on labelled requests, by serving time</h3>")
        parts.append(
            line_chart(
                _series(page, metric_points), page.axes(y_max=y_max), label=f"{metric} by version"
            )
        )
    else:
        parts.append(f"<h3>{escape(metric)}</h3>" + _empty())
    parts.append("<h3>label coverage: share of answered requests whose label has arrived</h3>")
    parts.append(
        line_chart(
            _series(page, coverage),
            page.axes(lambda y: f"{y:.0%}", y_max=1.0),
            label="label coverage by version",
        )
    )
    return _section("quality", "".join(parts), page)


def _rollout_rows(data: ReportData) -> list[tuple[float, str, str, str, str]]:
    """(time, what, version, detail, actor) of every rollout event and champion move."""
    rows = [
        (seconds(e.time), _ROLLOUT_KINDS[e.kind], e.version, e.reason, e.actor)
        for e in data.history.events
        if e.kind in _ROLLOUT_KINDS and e.model == data.model
    ]
    rows += [
        (
            seconds(m.time),
            "champion moved",
            m.version,
            f"from v{m.previous_version}: {m.reason}" if m.previous_version else m.reason,
            m.actor,
        )
        for m in data.champion_moves
    ]
    start, end = data.start.timestamp(), data.end.timestamp()
    return sorted((r for r in rows if start <= r[0] < end), key=lambda r: r[0])


def rollouts_section(page: Page) -> str:
    rows = _rollout_rows(page.data)
    if not rows:
        return _section("rollouts", _empty(), page)
    cells = [
        [_moment(at), what, f"v{version}", detail, by] for at, what, version, detail, by in rows
    ]
    classes = [what.replace(" ", "-") for _, what, *_ in rows]
    counts: dict[str, int] = defaultdict(int)
    for _, what, *_ in rows:
        counts[what] += 1
    summary = ", ".join(f"{n} {what}" for what, n in sorted(counts.items()))
    body = f'<p class="note">{escape(summary)}</p>' + _table(
        ["time (UTC)", "event", "version", "detail", "by"], cells, classes
    )
    return _section("rollouts", body, page)


def _gate(run: retrainer_pb2.RetrainRun) -> str:
    if not run.HasField("gate") or not run.gate.checks:
        return "not reached"
    verdict = "passed" if run.gate.passed else "refused"
    primary = next((c for c in run.gate.checks if c.name == "primary"), run.gate.checks[0])
    text = (
        f"{verdict}: {primary.metric} {_number(primary.champion)} -> {_number(primary.challenger)} "
        f"(effect {_number(primary.effect)}, CI {_number(primary.ci_low)} to "
        f"{_number(primary.ci_high)}, p {primary.p_value:.2g}, {primary.rows} rows)"
    )
    return text + "".join(f"; {reason}" for reason in run.gate.reasons)


def retraining_section(page: Page) -> str:
    start, end = page.data.start.timestamp(), page.data.end.timestamp()
    runs = sorted(
        (r for r in page.data.runs if start <= seconds(r.created) < end),
        key=lambda r: seconds(r.created),
    )
    if not runs:
        return _section("retraining", _empty(), page)
    rows, classes = [], []
    for run in runs:
        state = _name(retrainer_pb2.RunState.Name(run.state), "RUN_STATE_")
        rows.append(
            [
                _stamp_text(run.created),
                run.run_id,
                _name(retrainer_pb2.RetrainTrigger.Name(run.trigger), "RETRAIN_TRIGGER_"),
                state,
                f"v{run.parent_version} -> "
                + (f"v{run.new_version}" if run.new_version else "none"),
                f"{run.training_rows:,} / {run.holdout_rows:,}",
                _gate(run),
                run.rollout_outcome,
                run.outcome,
            ]
        )
        classes.append(state.replace(" ", "-"))
    header = [
        "created (UTC)",
        "run",
        "trigger",
        "state",
        "champion -> new",
        "train / holdout rows",
        "gate verdict",
        "rollout",
        "outcome",
    ]
    return _section("retraining", _table(header, rows, classes), page)


CSS = """
body { font: 14px/1.4 system-ui, sans-serif; color: #222; }
body { margin: 24px auto; max-width: 960px; padding: 0 12px; }
h1 { font-size: 22px; margin-bottom: 4px; }
h2 { font-size: 18px; border-bottom: 1px solid #ddd; padding-bottom: 4px; margin-top: 32px; }
h3 { font-size: 14px; margin: 16px 0 4px; }
.meta, .note { color: #555; }
.note { font-size: 13px; }
.empty { color: #777; font-style: italic; }
.missing { color: #a00; }
svg.chart { width: 100%; height: auto; display: block; font-size: 11px; }
svg.chart text { fill: #555; }
svg .plot { fill: #fafafa; stroke: #ccc; }
svg .grid { stroke: #e6e6e6; }
svg .rule { stroke-dasharray: 6 4; stroke-width: 1.5; }
svg .marker { stroke-width: 2; opacity: 0.55; }
svg .line { fill: none; stroke-width: 2; }
svg .flag { stroke: #c0392b; stroke-width: 2; }
ul.legend { list-style: none; padding: 0; margin: 4px 0; display: flex; flex-wrap: wrap; }
ul.legend { gap: 12px; font-size: 13px; }
.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 2px; }
.swatch { margin-right: 4px; vertical-align: -1px; }
table { border-collapse: collapse; width: 100%; font-size: 12px; margin-top: 8px; }
th, td { border-bottom: 1px solid #eee; padding: 4px 6px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
tr.critical td, tr.rolled-back td, tr.failed td { background: #fdecea; }
tr.rejected-challenger td, tr.rejected-data td { background: #fdecea; }
tr.promoted td, tr.succeeded td { background: #eaf7ec; }
"""
# No fetch of any kind, no script: the page is data and style only.
POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def render(data: ReportData) -> str:
    """The whole page."""
    page = Page(data)
    history = data.history
    champion = data.champion_moves[-1].version if data.champion_moves else ""
    facts = [
        f"window {data.start:%Y-%m-%d %H:%M:%S} to {data.end:%Y-%m-%d %H:%M:%S} UTC",
        f"generated {data.generated:%Y-%m-%d %H:%M:%S} UTC",
    ]
    if champion:
        facts.append(f"champion now v{champion}")
    if history.bucket_s:
        facts.append(f"buckets of {history.bucket_s} s")
    title = f"driftloop report: {data.model}"
    sections = [
        traffic_section(page),
        drift_section(page),
        quality_section(page),
        rollouts_section(page),
        retraining_section(page),
    ]
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{escape(POLICY)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
        f'<h1>driftloop report: <span class="model">{escape(data.model)}</span></h1>'
        f'<p class="meta">{escape("; ".join(facts))}</p>' + "".join(sections) + "</body></html>\n"
    )
