"""The Grafana dashboards as code: `python -m deploy.grafana.generate` writes
deploy/grafana/dashboards/*.json, which Grafana loads through the file provider in
deploy/grafana/provisioning.

What is in ClickHouse tables (the prediction log, labels, drift metrics and alerts, the
registry's alias history, the model events the drift service keeps (rollouts, canary
steps, promotions, rollbacks, halted retraining runs), retraining runs, steps and
decisions, shadow comparisons, A/B results) is read from ClickHouse through the
grafana-clickhouse-datasource plugin; rates, latency, lag, drops and dead letters come
from the services' Prometheus metrics.

Every ClickHouse query names the columns it returns and their kind (time, number, text):
tests/unit/test_grafana.py checks that the committed JSON is what this module writes and
that each panel's columns suit its visualisation; tests/integration/test_grafana_panels.py
runs every query, with the plugin's macros and the template variables expanded as Grafana
expands them, on the data of a real run of the loop and checks the columns it returns.
Every Prometheus expression names the metrics it reads, which the same integration test
finds on the live services' /metrics.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from driftloop.drift.config import DriftSettings

FOLDER = Path(__file__).resolve().parent / "dashboards"
CLICKHOUSE = {"type": "grafana-clickhouse-datasource", "uid": "driftloop-clickhouse"}
PROMETHEUS = {"type": "prometheus", "uid": "driftloop-prometheus"}
# The lines are the drift service's own defaults, so the dashboard and the alerts agree: a
# feature drifts from DRIFTLOOP_DRIFT_PSI_THRESHOLD and the drift is major from
# DRIFTLOOP_DRIFT_PSI_MAJOR (an operator who changes them regenerates the dashboards).
PSI_WARN: float = DriftSettings.model_fields["psi_threshold"].default
PSI_ALERT: float = DriftSettings.model_fields["psi_major"].default
EFFECT_MATERIAL: float = DriftSettings.model_fields["effect_threshold"].default

# Template variables: the model (one) and its versions (any, or all).
MODEL = "model = '${model}'"


def versions(column: str = "version") -> str:
    """A filter on the selected versions; with "All" the plugin replaces it with 1=1."""
    return f"$__conditionalAll({column} IN (${{version:singlequote}}), $version)"


class Kind(enum.Enum):
    TIME = "time"
    NUMBER = "number"
    TEXT = "text"


TIME, NUMBER, TEXT = Kind.TIME, Kind.NUMBER, Kind.TEXT


@dataclass(frozen=True)
class SQL:
    """A ClickHouse query and the columns (name -> kind) it returns, in order."""

    sql: str
    columns: Mapping[str, Kind]
    table: bool = False  # the plugin's table format, else time series (long to wide)

    def target(self, ref: str) -> dict[str, Any]:
        return {
            "datasource": CLICKHOUSE,
            "editorType": "sql",
            "format": 1 if self.table else 0,
            "queryType": "table" if self.table else "timeseries",
            "rawSql": self.sql,
            "refId": ref,
        }


@dataclass(frozen=True)
class PromQL:
    """A Prometheus expression, its legend, and the metric names it reads."""

    expr: str
    legend: str

    @property
    def metrics(self) -> list[str]:
        """Metric names in the expression (the words followed by a selector `{`)."""
        names = re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{", self.expr)
        return sorted({re.sub(r"_(bucket|count|sum)$", "", name) for name in names})

    def target(self, ref: str) -> dict[str, Any]:
        return {
            "datasource": PROMETHEUS,
            "expr": self.expr,
            "legendFormat": self.legend,
            "range": True,
            "refId": ref,
        }


Query = SQL | PromQL


@dataclass(frozen=True)
class Panel:
    title: str
    description: str
    queries: tuple[Query, ...]
    kind: str = "timeseries"  # timeseries | table | barchart
    unit: str = ""
    width: int = 12
    height: int = 8
    thresholds: tuple[tuple[float, str], ...] = ()  # drawn as lines on a time series
    stacked: bool = False
    bars: bool = False
    min: float | None = None
    max: float | None = None

    @property
    def datasource(self) -> dict[str, str]:
        return CLICKHOUSE if isinstance(self.queries[0], SQL) else PROMETHEUS


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True)
class Annotation:
    name: str
    color: str
    query: SQL


@dataclass(frozen=True)
class Variable:
    name: str
    label: str
    query: SQL
    multi: bool = False


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    rows: tuple[Row, ...]
    annotations: tuple[Annotation, ...] = ()
    variables: tuple[Variable, ...] = ()
    time_from: str = "now-6h"

    @property
    def file(self) -> str:
        return f"{self.uid.removeprefix('driftloop-')}.json"


MODEL_VARIABLE = Variable(
    "model",
    "model",
    SQL("SELECT DISTINCT model FROM driftloop.model_versions ORDER BY model", {"model": TEXT}),
)
VERSION_VARIABLE = Variable(
    "version",
    "version",
    SQL(
        "SELECT toString(number) AS version FROM (SELECT version AS number "
        f"FROM driftloop.model_versions FINAL WHERE {MODEL}) ORDER BY number DESC",
        {"version": TEXT},
    ),
    multi=True,
)
VARIABLES = (MODEL_VARIABLE, VERSION_VARIABLE)
LIVE = f"{MODEL} AND role = 'live'"


def per_interval(
    source: str, series: str | None, values: Mapping[str, str], where: str, time: str = "time"
) -> SQL:
    """One row per time bucket ($__timeInterval) and series: each value (name ->
    aggregate) over the rows of `source` in the time range that match `where`."""
    label = f"{series} AS series, " if series else ""
    group = "t, series" if series else "t"
    return SQL(
        f"SELECT $__timeInterval({time}) AS t, {label}"
        + ", ".join(f"{expression} AS {name}" for name, expression in values.items())
        + f" FROM {source} WHERE $__timeFilter({time}) AND {where} "
        f"GROUP BY {group} ORDER BY {group}",
        {"t": TIME, **({"series": TEXT} if series else {}), **dict.fromkeys(values, NUMBER)},
    )


def per_window(
    source: str, series: str, values: Mapping[str, str], where: str, *, aggregate: bool = False
) -> SQL:
    """One row per stored window (its end) and series, as the services wrote them; with
    `aggregate`, the values are aggregates over the rows of one window and series."""
    return SQL(
        f"SELECT window_end AS t, {series} AS series, "
        + ", ".join(
            expression if expression == name else f"{expression} AS {name}"
            for name, expression in values.items()
        )
        + f" FROM {source} WHERE $__timeFilter(window_end) AND {where} "
        + ("GROUP BY t, series " if aggregate else "")
        + "ORDER BY t, series",
        {"t": TIME, "series": TEXT, **dict.fromkeys(values, NUMBER)},
    )


def columns(*names: str) -> dict[str, str]:
    """Columns read as they are stored."""
    return {name: name for name in names}


def table(sql: str, columns: Mapping[str, Kind]) -> SQL:
    return SQL(sql, columns, table=True)


def texts(*names: str) -> dict[str, Kind]:
    return dict.fromkeys(names, TEXT)


def numbers(*names: str) -> dict[str, Kind]:
    return dict.fromkeys(names, NUMBER)


def seconds(start: str, end: str) -> str:
    return f"dateDiff('millisecond', {start}, {end}) / 1000"


RATE = "$__rate_interval"
PREDICTIONS = "driftloop.predictions FINAL"
BY_VERSION_VARIANT = "concat('v', version, ' ', variant)"
BY_VERSION = "concat('v', version)"

# --- serving: traffic, errors and latency -----------------------------------------------

SERVING = Dashboard(
    "driftloop-serving",
    "driftloop: serving",
    "Traffic, errors and latency per model version and variant (the prediction log in "
    "ClickHouse), and the gRPC servers' own rates and latency (Prometheus).",
    (
        Row(
            "Per version and variant (prediction log)",
            (
                Panel(
                    "Requests per second by version and variant",
                    "Live predictions logged by the gateway, per version and routing variant "
                    "(stable, canary, green, or the A/B variant's name).",
                    (
                        per_interval(
                            PREDICTIONS,
                            BY_VERSION_VARIANT,
                            {"requests_per_s": "count() / $__interval_s"},
                            f"{LIVE} AND {versions()}",
                        ),
                    ),
                    unit="reqps",
                    min=0,
                ),
                Panel(
                    "Error rate by version and variant",
                    "Share of live calls that failed (the failed call is logged with its "
                    "status; a canary failure answered by stable counts here).",
                    (
                        per_interval(
                            PREDICTIONS,
                            BY_VERSION_VARIANT,
                            {"error_rate": "countIf(error != '') / count()"},
                            f"{LIVE} AND {versions()}",
                        ),
                    ),
                    unit="percentunit",
                    min=0,
                ),
                Panel(
                    "Model latency by version (p50, p99)",
                    "Inference latency of each logged prediction, as the gateway measured it.",
                    (
                        per_interval(
                            PREDICTIONS,
                            BY_VERSION,
                            {
                                "p50_ms": "quantile(0.5)(latency_us) / 1000",
                                "p99_ms": "quantile(0.99)(latency_us) / 1000",
                            },
                            f"{LIVE} AND error = '' AND {versions()}",
                        ),
                    ),
                    unit="ms",
                    min=0,
                ),
                Panel(
                    "Calls by status and version",
                    "The live calls in the time range by version, variant and status.",
                    (
                        table(
                            f"SELECT {BY_VERSION} AS version, variant, "
                            "if(error = '', 'OK', error) AS status, count() AS calls "
                            f"FROM {PREDICTIONS} WHERE $__timeFilter(time) AND {LIVE} "
                            f"AND {versions()} GROUP BY version, variant, status "
                            "ORDER BY calls DESC LIMIT 100",
                            {**texts("version", "variant", "status"), "calls": NUMBER},
                        ),
                    ),
                    kind="table",
                ),
            ),
        ),
        Row(
            "gRPC servers and the gateway (Prometheus)",
            (
                Panel(
                    "gRPC calls per second by service and method",
                    "Every service's calls (go-grpc-prometheus names and labels).",
                    (
                        PromQL(
                            "sum by (grpc_service, grpc_method) "
                            f"(rate(grpc_server_handled_total{{}}[{RATE}]))",
                            "{{grpc_service}} {{grpc_method}}",
                        ),
                    ),
                    unit="reqps",
                    min=0,
                ),
                Panel(
                    "gRPC errors per second by service and code",
                    "Calls that ended with a status other than OK.",
                    (
                        PromQL(
                            "sum by (grpc_service, grpc_code) "
                            f'(rate(grpc_server_handled_total{{grpc_code!="OK"}}[{RATE}]))',
                            "{{grpc_service}} {{grpc_code}}",
                        ),
                    ),
                    unit="reqps",
                    min=0,
                ),
                Panel(
                    "gRPC p99 latency by service and method",
                    "Server-side handling time, 99th percentile, from the histogram buckets.",
                    (
                        PromQL(
                            "histogram_quantile(0.99, sum by (le, grpc_service, grpc_method) "
                            f"(rate(grpc_server_handling_seconds_bucket{{}}[{RATE}])))",
                            "{{grpc_service}} {{grpc_method}}",
                        ),
                    ),
                    unit="s",
                    min=0,
                ),
                Panel(
                    "Gateway predictions and fallbacks by variant",
                    "Predictions the gateway served for the model, and those a non-stable "
                    "version failed and stable answered.",
                    (
                        PromQL(
                            "sum by (variant) (rate(driftloop_gateway_requests_total"
                            f'{{model=~"$model"}}[{RATE}]))',
                            "{{variant}}",
                        ),
                        PromQL(
                            "sum by (variant) (rate(driftloop_gateway_fallbacks_total"
                            f'{{model=~"$model"}}[{RATE}]))',
                            "fallback {{variant}}",
                        ),
                    ),
                    unit="reqps",
                    min=0,
                ),
            ),
        ),
    ),
    variables=VARIABLES,
)

# --- drift and online accuracy -----------------------------------------------------------

PSI_LINES = ((PSI_WARN, "orange"), (PSI_ALERT, "red"))
DRIFT_METRICS = "driftloop.drift_metrics FINAL"
# Windows of the last N predictions are plotted as they are; fixed time windows say so.
TIME_WINDOW = "if(window_kind = 'time', ' (time window)', '')"
WINDOWED = f"{MODEL} AND {versions()} AND window_kind != 'online'"
LABELLED = "driftloop.predictions_labelled"
DELAY = seconds("time", "label_time")


def drift_metric(series: str, name: str, where: str) -> SQL:
    """A drift_metrics series of the selected versions' windows (not the online alarms)."""
    return per_window(
        DRIFT_METRICS, series, {name: "max(value)"}, f"{WINDOWED} AND {where}", aggregate=True
    )


DRIFT = Dashboard(
    "driftloop-drift",
    "driftloop: drift and accuracy",
    "Data drift per feature and prediction drift (PSI on the baseline's frozen bins, with "
    f"the {PSI_WARN} and {PSI_ALERT} lines), drift alerts, and the accuracy of each version "
    "on its labelled traffic, with label coverage and label delay.",
    (
        Row(
            "Drift",
            (
                Panel(
                    "PSI per feature",
                    "Population Stability Index of each feature's window against the "
                    f"version's training baseline. Above {PSI_WARN}: a moderate shift; "
                    f"above {PSI_ALERT}: a major one.",
                    (
                        drift_metric(
                            f"concat(stream, ' v', version, {TIME_WINDOW})",
                            "psi",
                            "test = 'psi' AND NOT startsWith(stream, '__')",
                        ),
                    ),
                    thresholds=PSI_LINES,
                    min=0,
                    width=24,
                ),
                Panel(
                    "Effect size per feature (KS D, total variation)",
                    "The share of the population that moved: the KS distance D of each "
                    "numeric feature against the baseline's reference sample, the total "
                    "variation distance of each categorical one. A significant feature "
                    f"drifts when it reaches {EFFECT_MATERIAL} even under the PSI line: "
                    "the slow drift PSI misses (a 0.25-sigma shift has D 0.10, PSI 0.06).",
                    (
                        drift_metric(
                            f"concat(stream, ' v', version, {TIME_WINDOW})",
                            "effect",
                            "test IN ('ks', 'tvd') AND NOT startsWith(stream, '__')",
                        ),
                    ),
                    thresholds=((EFFECT_MATERIAL, "orange"),),
                    min=0,
                    width=24,
                ),
                Panel(
                    "Prediction drift (PSI of the output)",
                    "The output distribution against the training baseline's: an early "
                    "warning that needs no labels.",
                    (
                        drift_metric(
                            f"concat('v', version, {TIME_WINDOW})",
                            "psi",
                            "test = 'psi' AND stream = '__output__'",
                        ),
                    ),
                    thresholds=PSI_LINES,
                    min=0,
                ),
                Panel(
                    "Share of drifted features",
                    "Features drifting (significant after Benjamini-Hochberg, and PSI or "
                    "effect size over its threshold) as a share of all; past "
                    "DRIFTLOOP_DRIFT_DATASET_DRIFT_SHARE "
                    "the window is dataset drift.",
                    (
                        drift_metric(
                            f"concat('v', version, {TIME_WINDOW})",
                            "drifted_share",
                            "stream = '__dataset__' AND test = 'drifted_share'",
                        ),
                    ),
                    unit="percentunit",
                    min=0,
                    max=1,
                ),
                Panel(
                    "Drift alerts",
                    "Every event of every alert: its open, each update (a stream joined, or "
                    "the severity rose: the same alert id, a higher revision) and its close "
                    "(back in control), with its streams.",
                    (
                        table(
                            f"SELECT time, {BY_VERSION} AS version, toString(kind) AS kind, "
                            "toString(state) AS state, revision, "
                            "toString(severity) AS severity, "
                            "arrayStringConcat(arraySlice(features, 1, 8), ', ') AS features, "
                            "summary, alert_id FROM driftloop.drift_alerts FINAL "
                            f"WHERE $__timeFilter(time) AND {MODEL} AND {versions()} "
                            "ORDER BY time DESC LIMIT 200",
                            {
                                "time": TIME,
                                **texts("version", "kind", "state"),
                                "revision": NUMBER,
                                **texts("severity", "features", "summary", "alert_id"),
                            },
                        ),
                    ),
                    kind="table",
                    width=24,
                ),
            ),
        ),
        Row(
            "Online accuracy and labels",
            (
                Panel(
                    "Accuracy on labelled traffic by version",
                    "Share of labelled live predictions whose class was the truth, by the "
                    "prediction's time (recent buckets fill in as labels arrive).",
                    (
                        per_interval(
                            LABELLED,
                            BY_VERSION,
                            {"accuracy": "avg(output_label = truth_label)"},
                            f"{LIVE} AND {versions()} AND truth_kind = 'label'",
                        ),
                    ),
                    unit="percentunit",
                    min=0,
                    max=1,
                ),
                Panel(
                    "Windowed performance against the holdout",
                    "The drift service's labelled window (accuracy, or MAE for regression) "
                    "and the version's holdout figure from training: concept drift is a "
                    "significant gap.",
                    (
                        drift_metric(
                            "concat(test, ' v', version)",
                            "value",
                            "stream = '__performance__' AND test IN "
                            "('accuracy', 'holdout_accuracy', 'mae', 'holdout_mae')",
                        ),
                    ),
                ),
                Panel(
                    "Label coverage by version",
                    "Share of answered live predictions that have their label (by the "
                    "prediction's time: the latest buckets wait for their labels).",
                    (
                        per_interval(
                            PREDICTIONS,
                            BY_VERSION,
                            {
                                "coverage": "countIf(request_id IN (SELECT request_id FROM "
                                "driftloop.labels FINAL WHERE time >= $__fromTime)) / count()"
                            },
                            f"{LIVE} AND error = '' AND {versions()}",
                        ),
                    ),
                    unit="percentunit",
                    min=0,
                    max=1,
                ),
                Panel(
                    "Label delay (prediction to label)",
                    "Time from a prediction to its label, by the label's arrival.",
                    (
                        per_interval(
                            LABELLED,
                            None,
                            {
                                "p50_s": f"quantile(0.5)({DELAY})",
                                "p90_s": f"quantile(0.9)({DELAY})",
                                "max_s": f"max({DELAY})",
                            },
                            f"{LIVE} AND {versions()}",
                            time="label_time",
                        ),
                    ),
                    unit="s",
                    min=0,
                ),
            ),
        ),
    ),
    variables=VARIABLES,
)

# --- rollouts and retraining -------------------------------------------------------------

RUNS = "driftloop.retrain_runs FINAL"
DECISIONS = "driftloop.retrain_decisions FINAL"
STEPS = "driftloop.retrain_steps FINAL"
EVENTS = "driftloop.model_events FINAL"
# The champion alias moved by a person (the gateway moves it as "gateway" when it promotes,
# and announces that as its own event), forwards or back to an older version.
BY_HAND = "kind = 'alias_moved' AND alias = 'champion' AND actor != 'gateway'"
BACKWARDS = "toUInt32OrZero(version) < toUInt32OrZero(previous_version)"


def model_events(title: str, kinds: Sequence[str], by_hand: str = "") -> SQL:
    """An annotation of the model's events of these kinds (and the champion's moves by
    hand matching `by_hand`): the event's kind as its tag, who and why as its text."""
    chosen = f"kind IN ({', '.join(repr(kind) for kind in kinds)})"
    if by_hand:
        chosen = f"({chosen} OR ({BY_HAND} AND {by_hand}))"
    return table(
        f"SELECT time, {title} AS title, "
        "if(reason = '', actor, concat(actor, ': ', reason)) AS text, kind AS tags "
        f"FROM {EVENTS} WHERE $__timeFilter(time) AND {MODEL} AND {chosen} ORDER BY time",
        {"time": TIME, **texts("title", "text", "tags")},
    )


ROLLOUTS = Dashboard(
    "driftloop-rollouts",
    "driftloop: rollouts and retraining",
    "The rollout timeline (live traffic per version; canary steps, promotions, rollbacks, "
    "halted and other retraining runs and drift alerts as annotations), every rollout event, "
    "and the retrainer's runs, decisions and gate verdicts.",
    (
        Row(
            "Rollouts",
            (
                Panel(
                    "Live traffic share by version (canary steps)",
                    "Each version's share of the answered live calls: a canary shows as its "
                    "steps, a blue-green switch as one jump, a promotion as the candidate "
                    "taking 100%.",
                    (
                        per_interval(
                            PREDICTIONS,
                            BY_VERSION,
                            {"share": "count() / sum(count()) OVER (PARTITION BY t)"},
                            f"{LIVE} AND error = ''",
                        ),
                    ),
                    unit="percentunit",
                    stacked=True,
                    min=0,
                    max=1,
                ),
                Panel(
                    "Canary step and retraining runs in progress",
                    "The gateway's current canary step per model (-1: no rollout), and 1 "
                    "while the retrainer runs a retraining of the model.",
                    (
                        PromQL(
                            'max by (model) (driftloop_gateway_rollout_step{model=~"$model"})',
                            "canary step",
                        ),
                        PromQL(
                            'max by (model) (driftloop_retrainer_run_in_progress{model=~"$model"})',
                            "retraining",
                        ),
                    ),
                ),
                Panel(
                    "Rollout events",
                    "Every event of the model, as the drift service keeps them from "
                    "model-events: rollouts started, canary steps, promotions, rollbacks, "
                    "alias moves, registrations, retraining runs halted.",
                    (
                        table(
                            "SELECT time, kind AS event, "
                            "if(version = '', '', concat('v', version)) AS version, "
                            "if(previous_version = '', '', concat('v', previous_version)) "
                            "AS previous, alias, run_id, run_state, actor, reason "
                            f"FROM {EVENTS} WHERE $__timeFilter(time) AND {MODEL} "
                            "ORDER BY time DESC, event_id LIMIT 500",
                            {"time": TIME, **texts("event", "version", "previous", "alias")}
                            | texts("run_id", "run_state", "actor", "reason"),
                        ),
                    ),
                    kind="table",
                    width=24,
                ),
                Panel(
                    "Alias history",
                    "Every alias move, append-only: who pointed which alias where, and why.",
                    (
                        table(
                            f"SELECT time, alias, {BY_VERSION} AS version, "
                            "if(previous_version = '', '', concat('v', previous_version)) "
                            "AS previous, actor, reason FROM driftloop.alias_history FINAL "
                            f"WHERE $__timeFilter(time) AND {MODEL} "
                            "ORDER BY time DESC, seq DESC LIMIT 200",
                            {"time": TIME, **texts("alias", "version", "previous", "actor")}
                            | texts("reason"),
                        ),
                    ),
                    kind="table",
                    width=24,
                ),
            ),
        ),
        Row(
            "Retraining",
            (
                Panel(
                    "Retraining runs",
                    "Each run: its trigger, state, parent and new version, data, the gate's "
                    "verdict and the rollout's outcome.",
                    (
                        table(
                            "SELECT created, run_id, trigger, state, "
                            "if(parent_version = '', '', concat('v', parent_version)) AS parent, "
                            "if(new_version = '', '', concat('v', new_version)) AS new, "
                            "training_rows, holdout_rows, "
                            "if(gate_passed = 1, 'passed', 'not passed') AS gate, "
                            f"rollout_outcome AS rollout, {seconds('created', 'updated')} "
                            f"AS seconds, outcome FROM {RUNS} "
                            f"WHERE $__timeFilter(created) AND {MODEL} "
                            "ORDER BY created DESC LIMIT 100",
                            {"created": TIME, **texts("run_id", "trigger", "state", "parent")}
                            | texts("new")
                            | numbers("training_rows", "holdout_rows")
                            | texts("gate", "rollout")
                            | numbers("seconds")
                            | texts("outcome"),
                        ),
                    ),
                    kind="table",
                    width=24,
                ),
                Panel(
                    "Gate verdicts",
                    "The champion/challenger gate of every run that reached it: passed, or "
                    "refused with its reasons.",
                    (
                        table(
                            "SELECT started AS time, run_id, "
                            "multiIf(state = 'succeeded', 'passed', state = 'failed', 'refused', "
                            f"state) AS verdict, detail FROM {STEPS} "
                            f"WHERE $__timeFilter(started) AND {MODEL} AND step = 'gate' "
                            "ORDER BY started DESC LIMIT 100",
                            {"time": TIME, **texts("run_id", "verdict", "detail")},
                        ),
                    ),
                    kind="table",
                ),
                Panel(
                    "Retraining decisions",
                    "Every trigger the retrainer considered: the run it started, or why not.",
                    (
                        table(
                            "SELECT time, trigger, "
                            "if(triggered = 1, 'run', 'skipped') AS decision, reason, run_id "
                            f"FROM {DECISIONS} WHERE $__timeFilter(time) AND {MODEL} "
                            "ORDER BY time DESC LIMIT 200",
                            {"time": TIME, **texts("trigger", "decision", "reason", "run_id")},
                        ),
                    ),
                    kind="table",
                ),
                Panel(
                    "Decisions by trigger",
                    "Triggers considered per interval, by trigger and outcome.",
                    (
                        per_interval(
                            DECISIONS,
                            "concat(trigger, ': ', if(triggered = 1, 'run', 'skipped'))",
                            {"decisions": "count()"},
                            MODEL,
                        ),
                    ),
                    bars=True,
                    min=0,
                ),
                Panel(
                    "Step durations",
                    "Mean and longest time of each pipeline step over the runs in range.",
                    (
                        table(
                            f"SELECT step, avg({seconds('started', 'finished')}) AS mean_s, "
                            f"max({seconds('started', 'finished')}) AS max_s FROM {STEPS} "
                            f"WHERE $__timeFilter(started) AND {MODEL} AND state != 'running' "
                            "GROUP BY step ORDER BY min(ordinal)",
                            {"step": TEXT, **numbers("mean_s", "max_s")},
                        ),
                    ),
                    kind="barchart",
                    unit="s",
                ),
            ),
        ),
    ),
    annotations=(
        Annotation(
            "Canary steps",
            "purple",
            model_events(
                "if(kind = 'rollout_started', concat('rollout of v', version, ' started'), "
                "concat('canary of v', version, ' stepped'))",
                ("rollout_started", "rollout_stepped"),
            ),
        ),
        Annotation(
            "Promotions",
            "green",
            model_events(
                "if(kind = 'promoted', concat('v', version, ' promoted'), "
                "concat('champion set to v', version, ' by hand'))",
                ("promoted",),
                f"NOT ({BACKWARDS})",
            ),
        ),
        Annotation(
            "Rollbacks and halted retraining",
            "red",
            model_events(
                "multiIf(kind = 'rolled_back', concat('rollout of v', version, ' rolled back'), "
                "kind = 'retrain_halted', concat('retraining ', run_id, ' halted: ', run_state), "
                "concat('champion back to v', version, ' by hand'))",
                ("rolled_back", "retrain_halted"),
                BACKWARDS,
            ),
        ),
        Annotation(
            "Retraining runs",
            "blue",
            table(
                "SELECT created AS time, updated AS timeEnd, "
                "concat('retraining ', run_id, ' (', trigger, '): ', state) AS title, "
                f"outcome AS text, concat('retraining,', state) AS tags FROM {RUNS} "
                f"WHERE $__timeFilter(created) AND {MODEL} ORDER BY created",
                {"time": TIME, "timeEnd": TIME, **texts("title", "text", "tags")},
            ),
        ),
        Annotation(
            "Drift alerts",
            "orange",
            table(
                "SELECT time, concat(toString(kind), ' drift alert ', toString(state), ' on v', "
                "version) AS title, "
                "summary AS text, concat(toString(kind), ',', toString(severity)) AS tags "
                "FROM driftloop.drift_alerts FINAL "
                f"WHERE $__timeFilter(time) AND {MODEL} ORDER BY time",
                {"time": TIME, **texts("title", "text", "tags")},
            ),
        ),
    ),
    variables=VARIABLES,
)

# --- shadow and A/B ----------------------------------------------------------------------

SHADOW = "driftloop.shadow_comparisons FINAL"
SHADOWS = f"{MODEL} AND {versions('shadow_version')}"
AB = "driftloop.ab_results FINAL"

EXPERIMENTS = Dashboard(
    "driftloop-experiments",
    "driftloop: shadow and A/B",
    "Shadow versions against live on the same requests (agreement, the labelled "
    "comparison, latency and errors) and A/B experiments per variant, as the shadow "
    "service stores them every DRIFTLOOP_SHADOW_COMPARE_EVERY_S.",
    (
        Row(
            "Shadow",
            (
                Panel(
                    "Shadow agreement with live",
                    "Share of compared requests where the shadow version gave the live "
                    "answer, with its 95% interval.",
                    (
                        per_window(
                            SHADOW,
                            "concat('v', shadow_version)",
                            columns("agreement", "agreement_low", "agreement_high"),
                            SHADOWS,
                        ),
                    ),
                    unit="percentunit",
                    min=0,
                    max=1,
                ),
                Panel(
                    "Shadow minus live on labelled requests",
                    "The quality difference (shadow - live, accuracy or MAE) with its 95% "
                    "interval: above zero the shadow is better (for MAE, below).",
                    (
                        per_window(
                            SHADOW,
                            "concat('v', shadow_version)",
                            columns("effect", "effect_low", "effect_high"),
                            f"{SHADOWS} AND labelled > 0",
                        ),
                    ),
                ),
                Panel(
                    "Shadow against live, latest window",
                    "The newest comparison of each shadow version: verdict, quality, "
                    "latency and errors on both sides.",
                    (
                        table(
                            "SELECT window_end, concat('v', shadow_version) AS shadow, "
                            "live_version AS live, compared, agreement, labelled, metric, "
                            "live_metric, shadow_metric, effect, effect_low, effect_high, "
                            "p_value, verdict, live_p99_latency_ms AS live_p99_ms, "
                            "shadow_p99_latency_ms AS shadow_p99_ms, live_error_rate, "
                            f"shadow_error_rate, skipped_share FROM {SHADOW} "
                            f"WHERE $__timeFilter(window_end) AND {SHADOWS} "
                            "ORDER BY window_end DESC LIMIT 1 BY shadow_version",
                            {"window_end": TIME, **texts("shadow", "live")}
                            | numbers("compared", "agreement", "labelled")
                            | texts("metric")
                            | numbers("live_metric", "shadow_metric", "effect", "effect_low")
                            | numbers("effect_high", "p_value")
                            | texts("verdict")
                            | numbers("live_p99_ms", "shadow_p99_ms", "live_error_rate")
                            | numbers("shadow_error_rate", "skipped_share"),
                        ),
                    ),
                    kind="table",
                    width=24,
                ),
            ),
        ),
        Row(
            "A/B",
            (
                Panel(
                    "A/B quality by variant",
                    "Each variant's labelled quality (accuracy or MAE) with its "
                    "cluster-robust 95% interval.",
                    (
                        per_window(
                            AB,
                            "concat(variant, ' (v', version, ')')",
                            columns("value", "value_low", "value_high"),
                            MODEL,
                        ),
                    ),
                ),
                Panel(
                    "A/B requests by variant",
                    "Live requests per variant in each stored window.",
                    (per_window(AB, "variant", columns("requests"), MODEL),),
                    bars=True,
                    min=0,
                ),
                Panel(
                    "A/B results, latest window",
                    "Each variant against the control: the difference with its interval, "
                    "the fixed-horizon and the always-valid p-value, the labelled rows the "
                    "design needs, and the decision.",
                    (
                        table(
                            "SELECT window_end, variant, version, control, requests, units, "
                            "error_rate, p99_latency_ms, labelled, metric, value, value_low, "
                            "value_high, difference, difference_low, difference_high, p_value, "
                            f"always_valid_p, required_labelled, decision FROM {AB} "
                            f"WHERE $__timeFilter(window_end) AND {MODEL} "
                            "ORDER BY window_end DESC LIMIT 1 BY variant",
                            {"window_end": TIME, **texts("variant", "version", "control")}
                            | numbers("requests", "units", "error_rate", "p99_latency_ms")
                            | numbers("labelled")
                            | texts("metric")
                            | numbers("value", "value_low", "value_high", "difference")
                            | numbers("difference_low", "difference_high", "p_value")
                            | numbers("always_valid_p", "required_labelled")
                            | texts("decision"),
                        ),
                    ),
                    kind="table",
                    width=24,
                ),
            ),
        ),
    ),
    variables=VARIABLES,
)

# --- the log pipeline ----------------------------------------------------------------------

PIPELINE = Dashboard(
    "driftloop-pipeline",
    "driftloop: log pipeline",
    "The prediction log's way into ClickHouse: what is stored and how late (ClickHouse), "
    "the consumers' lag, what they refused (dead letters) and what the gateway dropped "
    "(Prometheus).",
    (
        Row(
            "Stored in ClickHouse",
            (
                Panel(
                    "Predictions stored per second by role",
                    "Live and shadow predictions in the log, by prediction time.",
                    (
                        per_interval(
                            PREDICTIONS,
                            "toString(role)",
                            {"per_s": "count() / $__interval_s"},
                            MODEL,
                        ),
                    ),
                    unit="reqps",
                    min=0,
                ),
                Panel(
                    "Labels stored per second by source",
                    "Labels by their time, per producer (source); labels name no model.",
                    (
                        per_interval(
                            "driftloop.labels FINAL",
                            "source",
                            {"per_s": "count() / $__interval_s"},
                            "1 = 1",
                        ),
                    ),
                    unit="reqps",
                    min=0,
                ),
                Panel(
                    "Sink delay: served to stored",
                    "Time from a prediction to its row in ClickHouse (the gateway's buffer, "
                    "Kafka and the drift service's sink together).",
                    (
                        per_interval(
                            "driftloop.predictions",
                            None,
                            {
                                "p50_s": f"quantile(0.5)({seconds('time', 'ingested')})",
                                "p99_s": f"quantile(0.99)({seconds('time', 'ingested')})",
                            },
                            MODEL,
                        ),
                    ),
                    unit="s",
                    min=0,
                ),
            ),
        ),
        Row(
            "Kafka consumers and drops (Prometheus)",
            (
                Panel(
                    "Consumer lag by group and topic",
                    "Records on the broker that a consumer group has not committed yet: the "
                    "drift sink (predictions, labels), the shadow mirror, the retrainer.",
                    (
                        PromQL(
                            "sum by (group, topic) (driftloop_consumer_lag_records{})",
                            "{{group}} {{topic}}",
                        ),
                    ),
                    min=0,
                ),
                Panel(
                    "Dead letters per second by topic and stage",
                    "Records a consumer refused (decode: invalid; store: refused by "
                    "ClickHouse after isolation), each sent to dead-letter with its reason.",
                    (
                        PromQL(
                            "sum by (topic, stage) "
                            f"(rate(driftloop_dead_letters_total{{}}[{RATE}]))",
                            "{{topic}} {{stage}}",
                        ),
                    ),
                    unit="reqps",
                    min=0,
                ),
                Panel(
                    "Dropped log and mirror records",
                    "Prediction-log and shadow-mirror records the gateway dropped (its "
                    "buffer full, or Kafka failed): the request was served all the same.",
                    (
                        PromQL(
                            "sum by (reason) (increase("
                            f"driftloop_gateway_log_dropped_records_total{{}}[{RATE}]))",
                            "log {{reason}}",
                        ),
                        PromQL(
                            "sum by (reason) (increase("
                            f"driftloop_gateway_shadow_dropped_records_total{{}}[{RATE}]))",
                            "mirror {{reason}}",
                        ),
                    ),
                    bars=True,
                    min=0,
                ),
                Panel(
                    "Sink records per second and batch time",
                    "What the drift service's sink wrote to ClickHouse, by kind, and its "
                    "p99 time per consumer batch (right axis).",
                    (
                        PromQL(
                            f"sum by (kind) (rate(driftloop_drift_sink_records_total{{}}[{RATE}]))",
                            "{{kind}}",
                        ),
                        PromQL(
                            "histogram_quantile(0.99, sum by (le) "
                            f"(rate(driftloop_drift_sink_batch_seconds_bucket{{}}[{RATE}])))",
                            "p99 batch seconds",
                        ),
                    ),
                    min=0,
                ),
                Panel(
                    "Shadow mirror lag and retried batches",
                    "Age of the oldest mirrored request in the shadow service's last batch, "
                    "and consumer batches retried because the store was unavailable.",
                    (
                        PromQL("max(driftloop_shadow_lag_seconds{})", "shadow lag (s)"),
                        PromQL(
                            "sum by (group) "
                            f"(rate(driftloop_consumer_batch_retries_total{{}}[{RATE}]))",
                            "retries/s {{group}}",
                        ),
                    ),
                    min=0,
                ),
            ),
        ),
    ),
    variables=VARIABLES,
)

DASHBOARDS = (SERVING, DRIFT, ROLLOUTS, EXPERIMENTS, PIPELINE)


# --- rendering -----------------------------------------------------------------------------


def field_config(panel: Panel) -> dict[str, Any]:
    defaults: dict[str, Any] = {}
    if panel.unit:
        defaults["unit"] = panel.unit
    if panel.min is not None:
        defaults["min"] = panel.min
    if panel.max is not None:
        defaults["max"] = panel.max
    steps: list[dict[str, Any]] = [{"color": "green", "value": None}]
    steps += [{"color": color, "value": value} for value, color in panel.thresholds]
    defaults["thresholds"] = {"mode": "absolute", "steps": steps}
    if panel.kind == "timeseries":
        defaults["custom"] = {
            "drawStyle": "bars" if panel.bars else "line",
            "fillOpacity": 80 if panel.bars else (30 if panel.stacked else 0),
            "lineWidth": 1,
            "showPoints": "auto",
            "spanNulls": False,
            "stacking": {"group": "A", "mode": "normal" if panel.stacked else "none"},
            "thresholdsStyle": {"mode": "line" if panel.thresholds else "off"},
        }
    return {"defaults": defaults, "overrides": []}


def options(panel: Panel) -> dict[str, Any]:
    if panel.kind == "table":
        return {"cellHeight": "sm", "footer": {"show": False}, "showHeader": True}
    legend = {"calcs": [], "displayMode": "list", "placement": "bottom", "showLegend": True}
    if panel.kind == "barchart":
        query = panel.queries[0]
        assert isinstance(query, SQL), "bar charts of ClickHouse categories"
        return {"legend": legend, "orientation": "horizontal", "xField": next(iter(query.columns))}
    return {"legend": legend, "tooltip": {"mode": "multi", "sort": "desc"}}


def render_panel(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    refs = "ABCDEFGHIJ"
    return {
        "datasource": panel.datasource,
        "description": panel.description,
        "fieldConfig": field_config(panel),
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "id": panel_id,
        "options": options(panel),
        "targets": [query.target(refs[i]) for i, query in enumerate(panel.queries)],
        "title": panel.title,
        "type": panel.kind,
    }


def render_variable(variable: Variable) -> dict[str, Any]:
    return {
        "current": {},
        "datasource": CLICKHOUSE,
        "definition": variable.query.sql,
        "hide": 0,
        "includeAll": variable.multi,
        "label": variable.label,
        "multi": variable.multi,
        "name": variable.name,
        "options": [],
        "query": variable.query.sql,
        "refresh": 2,
        "skipUrlSync": False,
        "sort": 0,
        "type": "query",
    }


def render_annotation(annotation: Annotation) -> dict[str, Any]:
    return {
        "datasource": CLICKHOUSE,
        "enable": True,
        "iconColor": annotation.color,
        "name": annotation.name,
        "target": annotation.query.target("Anno"),
    }


BUILT_IN_ANNOTATION = {
    "builtIn": 1,
    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
    "enable": True,
    "hide": True,
    "iconColor": "rgba(0, 211, 255, 1)",
    "name": "Annotations & Alerts",
    "type": "dashboard",
}


def render(dashboard: Dashboard) -> dict[str, Any]:
    """The dashboard's JSON model, as Grafana stores it."""
    panels: list[dict[str, Any]] = []
    next_id, y = 1, 0
    for row in dashboard.rows:
        panels.append(
            {
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "id": next_id,
                "panels": [],
                "title": row.title,
                "type": "row",
            }
        )
        next_id, y = next_id + 1, y + 1
        x, line_height = 0, 0
        for panel in row.panels:
            if x + panel.width > 24:
                x, y, line_height = 0, y + line_height, 0
            panels.append(render_panel(panel, next_id, x, y))
            next_id += 1
            x += panel.width
            line_height = max(line_height, panel.height)
        y += line_height
    return {
        "annotations": {
            "list": [BUILT_IN_ANNOTATION, *(render_annotation(a) for a in dashboard.annotations)]
        },
        "description": dashboard.description,
        "editable": False,
        "graphTooltip": 1,
        "links": [
            {
                "asDropdown": True,
                "includeVars": True,
                "keepTime": True,
                "tags": ["driftloop"],
                "title": "driftloop",
                "type": "dashboards",
            }
        ],
        "panels": panels,
        "refresh": "30s",
        "schemaVersion": 39,
        "tags": ["driftloop"],
        "templating": {"list": [render_variable(v) for v in dashboard.variables]},
        "time": {"from": dashboard.time_from, "to": "now"},
        "timepicker": {},
        "timezone": "utc",
        "title": dashboard.title,
        "uid": dashboard.uid,
        "version": 1,
    }


def text(dashboard: Dashboard) -> str:
    return json.dumps(render(dashboard), indent=2, sort_keys=True) + "\n"


def queries(dashboard: Dashboard) -> Iterator[tuple[str, Query]]:
    """Every query of the dashboard with where it is: panels, annotations, variables."""
    for row in dashboard.rows:
        for panel in row.panels:
            for query in panel.queries:
                yield f"{dashboard.uid} / {panel.title}", query
    for annotation in dashboard.annotations:
        yield f"{dashboard.uid} / annotation {annotation.name}", annotation.query
    for variable in dashboard.variables:
        yield f"{dashboard.uid} / variable {variable.name}", variable.query


def write(folder: Path = FOLDER, dashboards: Sequence[Dashboard] = DASHBOARDS) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for dashboard in dashboards:
        path = folder / dashboard.file
        path.write_text(text(dashboard))
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write():
        print(path)
