"""The Grafana dashboards (deploy/grafana): the committed JSON is what the code generates,
each panel's columns suit its visualisation, the layout holds, and the query expansion
the panel tests rely on (tests/grafana_sql.py) is the ClickHouse plugin's own."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.grafana import generate
from deploy.grafana.generate import NUMBER, SQL, TEXT, TIME, Dashboard, PromQL
from driftloop.drift.config import DriftSettings
from tests.grafana_sql import Request, Selection, render
from tests.unit.test_prometheus import promtool

GRAFANA = Path(generate.__file__).parent


@pytest.mark.parametrize("dashboard", generate.DASHBOARDS, ids=lambda d: d.uid)
def test_the_committed_json_is_what_the_code_generates(dashboard: Dashboard) -> None:
    committed = (generate.FOLDER / dashboard.file).read_text()
    assert committed == generate.text(dashboard), (
        f"{dashboard.file} is stale: run `python -m deploy.grafana.generate` and commit"
    )


def test_no_other_dashboard_files() -> None:
    files = {path.name for path in generate.FOLDER.iterdir()}
    assert files == {d.file for d in generate.DASHBOARDS}


def test_each_panel_returns_what_its_visualisation_reads() -> None:
    for dashboard in generate.DASHBOARDS:
        for row in dashboard.rows:
            for panel in row.panels:
                where = f"{dashboard.uid} / {panel.title}"
                kinds = {type(q) for q in panel.queries}
                assert len(kinds) == 1, f"{where}: one datasource per panel"
                for query in panel.queries:
                    if not isinstance(query, SQL):
                        continue
                    columns = list(query.columns.values())
                    if panel.kind == "timeseries":
                        assert not query.table, where
                        assert columns[0] is TIME, f"{where}: the time column first"
                        assert set(columns[1:]) <= {TEXT, NUMBER}, where
                        assert NUMBER in columns, f"{where}: a value to plot"
                    elif panel.kind == "barchart":
                        assert columns[0] is TEXT and set(columns[1:]) == {NUMBER}, where
                        assert generate.options(panel)["xField"] == next(iter(query.columns))
                    else:
                        assert panel.kind == "table" and query.table, where


def test_annotations_return_grafana_annotation_fields() -> None:
    allowed = {"time": TIME, "timeEnd": TIME, "title": TEXT, "text": TEXT, "tags": TEXT}
    for dashboard in generate.DASHBOARDS:
        for annotation in dashboard.annotations:
            columns = dict(annotation.query.columns)
            assert columns.get("time") is TIME and "text" in columns, annotation.name
            assert all(allowed.get(name) is kind for name, kind in columns.items())


def test_variables_return_one_text_column_and_every_query_filters_the_model() -> None:
    for dashboard in generate.DASHBOARDS:
        assert [v.name for v in dashboard.variables] == ["model", "version"]
        for where, query in generate.queries(dashboard):
            if not isinstance(query, SQL):
                continue
            if "variable" in where:
                assert list(query.columns.values()) == [TEXT], where
            elif "driftloop.labels FINAL WHERE $__timeFilter" not in query.sql:
                assert "$__timeFilter(" in query.sql, f"{where}: bounded by the time range"
                assert generate.MODEL in query.sql, f"{where}: the selected model"


def test_the_layout_fits_the_grid_without_overlaps() -> None:
    for dashboard in generate.DASHBOARDS:
        model = generate.render(dashboard)
        cells: set[tuple[int, int]] = set()
        ids = [panel["id"] for panel in model["panels"]]
        assert len(ids) == len(set(ids))
        for panel in model["panels"]:
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24, panel["title"]
            mine = {
                (x, y)
                for x in range(grid["x"], grid["x"] + grid["w"])
                for y in range(grid["y"], grid["y"] + grid["h"])
            }
            assert not mine & cells, f"{dashboard.uid} / {panel['title']} overlaps"
            cells |= mine


def test_the_psi_thresholds_are_lines_on_the_drift_panels() -> None:
    # The drift service's own thresholds: the lines and its alerts agree.
    model = generate.render(generate.DRIFT)
    panel = next(p for p in model["panels"] if p["title"] == "PSI per feature")
    defaults = panel["fieldConfig"]["defaults"]
    assert defaults["custom"]["thresholdsStyle"] == {"mode": "line"}
    settings = DriftSettings()
    assert [s["value"] for s in defaults["thresholds"]["steps"]] == [
        None,
        settings.psi_threshold,
        settings.psi_major,
    ]


def test_the_effect_size_threshold_is_a_line_on_its_panel() -> None:
    model = generate.render(generate.DRIFT)
    panel = next(p for p in model["panels"] if p["title"].startswith("Effect size per feature"))
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["value"] for s in steps] == [None, DriftSettings().effect_threshold]


def test_the_dashboards_use_the_provisioned_datasources() -> None:
    provisioned = yaml.safe_load((GRAFANA / "provisioning/datasources/driftloop.yaml").read_text())
    uids = {source["type"]: source["uid"] for source in provisioned["datasources"]}
    assert uids == {
        generate.CLICKHOUSE["type"]: generate.CLICKHOUSE["uid"],
        generate.PROMETHEUS["type"]: generate.PROMETHEUS["uid"],
    }
    known = [generate.CLICKHOUSE, generate.PROMETHEUS, generate.BUILT_IN_ANNOTATION["datasource"]]
    for dashboard in generate.DASHBOARDS:
        used = list(datasources(generate.render(dashboard)))
        assert used and all(source in known for source in used), dashboard.uid
    providers = yaml.safe_load((GRAFANA / "provisioning/dashboards/driftloop.yaml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]


def datasources(node: Any) -> Iterator[Any]:
    """Every `datasource` value in a JSON model."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                yield value
            else:
                yield from datasources(value)
    elif isinstance(node, list):
        for item in node:
            yield from datasources(item)


def test_every_prometheus_expression_parses(tmp_path: Path) -> None:
    """promtool reads each expression (Grafana's variables given values) as a rule's."""
    values = {"$__rate_interval": "1m", "$model": "churn"}
    rules: list[dict[str, str]] = []
    for dashboard in generate.DASHBOARDS:
        for _, query in generate.queries(dashboard):
            if isinstance(query, PromQL):
                expr = query.expr
                for name, value in values.items():
                    expr = expr.replace(name, value)
                assert "$" not in expr, query.expr
                rules.append({"record": f"dashboard:query_{len(rules)}", "expr": expr})
    path = tmp_path / "dashboards.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    assert f"SUCCESS: {len(rules)} rules found" in promtool("check", "rules", str(path))


def test_promql_names_the_metrics_it_reads() -> None:
    query = PromQL(
        'histogram_quantile(0.99, sum by (le) (rate(a_seconds_bucket{x="1"}[5m]))) '
        '/ on() b_total{y=~"$model"}',
        "",
    )
    assert query.metrics == ["a_seconds", "b_total"]


# The plugin's own expectations (grafana/clickhouse-datasource pkg/macros/macros_test.go).
FROM = dt.datetime(2014, 11, 12, 11, 45, 26, 123000, tzinfo=dt.UTC)
TO = dt.datetime(2015, 11, 12, 11, 45, 26, 456000, tzinfo=dt.UTC)
PLUGIN = Request(FROM, TO, dt.timedelta(seconds=20), {})


@pytest.mark.parametrize(
    ("sql", "expanded"),
    [
        (
            "select * from foo where $__timeFilter(cast(sth as timestamp) )",
            "select * from foo where cast(sth as timestamp) >= toDateTime(1415792726) "
            "AND cast(sth as timestamp) <= toDateTime(1447328726)",
        ),
        (
            "select * from foo where $__timeFilter_ms(cast(sth as timestamp))",
            "select * from foo where cast(sth as timestamp) >= "
            "fromUnixTimestamp64Milli(1415792726123) AND cast(sth as timestamp) <= "
            "fromUnixTimestamp64Milli(1447328726456)",
        ),
        (
            "select * from foo where ( date >= $__fromTime ) and ( date <= $__toTime ) limit 100",
            "select * from foo where ( date >= toDateTime(1415792726) ) and "
            "( date <= toDateTime(1447328726) ) limit 100",
        ),
        (
            "select * from foo where ( date >= $__fromTime_ms and date <= $__toTime_ms )",
            "select * from foo where ( date >= fromUnixTimestamp64Milli(1415792726123) and "
            "date <= fromUnixTimestamp64Milli(1447328726456) )",
        ),
        (
            "$__dateTimeFilter(dateCol, timeCol)",
            "(dateCol >= toDate('2014-11-12') AND dateCol <= toDate('2015-11-12')) AND "
            "(timeCol >= toDateTime(1415792726) AND timeCol <= toDateTime(1447328726))",
        ),
        (
            "select $__timeInterval(col) from foo",
            "select toStartOfInterval(toDateTime(col), INTERVAL 20 second) from foo",
        ),
        (
            "select $__timeInterval_ms(col) from foo",
            "select toStartOfInterval(toDateTime64(col, 3), INTERVAL 20000 millisecond) from foo",
        ),
        ("INTERVAL $__interval_s second", "INTERVAL 20 second"),
    ],
)
def test_macros_expand_as_the_plugin_expands_them(sql: str, expanded: str) -> None:
    assert render(sql, PLUGIN) == expanded


def test_conditional_all_and_variables_expand_as_grafana_expands_them() -> None:
    sql = "WHERE model = '${model}' AND $__conditionalAll(v IN (${version:singlequote}), $version)"
    chosen = {"model": Selection(("m",)), "version": Selection(("2", "3"), multi=True)}
    assert render(sql, Request(FROM, TO, dt.timedelta(seconds=1), chosen)) == (
        "WHERE model = 'm' AND v IN ('2','3')"
    )
    every = {**chosen, "version": Selection(("1", "2", "3"), all=True, multi=True)}
    assert render(sql, Request(FROM, TO, dt.timedelta(seconds=1), every)) == (
        "WHERE model = 'm' AND 1=1"
    )
    with pytest.raises(ValueError, match="unexpanded"):
        render("SELECT $unknown", PLUGIN)
    with pytest.raises(ValueError, match="not a macro"):
        render("SELECT $__columns(a, b, c) FROM t", PLUGIN)
