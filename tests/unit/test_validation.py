"""Unit tests of the retraining data gate: corruption fails, expected drift passes."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest

from driftloop.models.baseline import Baseline, categorical_baseline, numeric_baseline
from driftloop.models.schema import Feature, OutputKind, Schema
from driftloop.models.table import Column, Table
from driftloop.models.validation import (
    Check,
    DataReport,
    ValidationPolicy,
    validate_training_data,
)

ROWS = 5000
TARGET = "churned"
MEANS = {"tenure": 24.0, "usage": 70.0, "score": 0.0}
STDS = {"tenure": 8.0, "usage": 15.0, "score": 1.0}
PLANS = ("basic", "plus", "pro")
PLAN_SHARES = (0.5, 0.3, 0.2)
SCHEMA = Schema(
    (
        Feature("tenure", "number"),
        Feature("usage", "number"),
        Feature("score", "number"),
        Feature("plan", "category", categories=PLANS),
    )
)
POLICY = ValidationPolicy()
BASELINE_FREE = {
    "min_rows",
    "schema",
    "target",
    "missing_labels",
    "classes",
    "class_balance",
    "duplicate_request_ids",
    "no_baseline",
    "non_finite",
    "nan_not_allowed",
}


def make_table(seed: int, rows: int = ROWS, shift: float = 0.0) -> Table:
    """Features as the champion saw them (shifted by `shift` sigma), churn from a logit."""
    rng = np.random.default_rng(seed)
    numbers = {
        name: rng.normal(MEANS[name] + shift * STDS[name], STDS[name], rows) for name in MEANS
    }
    columns: dict[str, Column] = dict(numbers)
    columns["plan"] = rng.choice(np.asarray(PLANS), rows, p=PLAN_SHARES)
    logit = -0.8 - 0.08 * (numbers["tenure"] - 24.0) + 0.03 * (numbers["usage"] - 70.0)
    columns[TARGET] = (rng.random(rows) < 1.0 / (1.0 + np.exp(-logit))).astype(np.float64)
    return Table(columns)


def make_baseline(table: Table) -> Baseline:
    rng = np.random.default_rng(0)
    return Baseline(
        numeric=[
            numeric_baseline(name, table.columns[name].astype(np.float64), rng) for name in MEANS
        ],
        categorical=[categorical_baseline("plan", table.columns["plan"].astype(np.str_))],
    )


BASELINE = make_baseline(make_table(seed=1))


def num(table: Table, name: str) -> npt.NDArray[np.float64]:
    return table.columns[name].astype(np.float64)


def changed(table: Table, **columns: Column) -> Table:
    return Table({**table.columns, **columns})


def validate(
    table: Table,
    baseline: Baseline | None = BASELINE,
    request_ids: npt.NDArray[np.str_] | None = None,
    output_kind: OutputKind = "binary",
) -> DataReport:
    return validate_training_data(
        table, SCHEMA, TARGET, output_kind, baseline, POLICY, request_ids=request_ids
    )


def ids(rows: int) -> npt.NDArray[np.str_]:
    return np.asarray([f"req-{i}" for i in range(rows)], dtype=np.str_)


def only_failure(report: DataReport) -> Check:
    assert not report.passed
    assert len(report.failures) == 1, [c.message for c in report.failures]
    return report.failures[0]


def test_clean_data_passes_every_check() -> None:
    report = validate(make_table(seed=2), request_ids=ids(ROWS))
    assert report.passed
    assert report.rows == ROWS
    assert report.failures == () and report.warnings == ()
    names = {check.name for check in report.checks}
    assert names >= {
        "min_rows",
        "schema",
        "target",
        "missing_labels",
        "classes",
        "class_balance",
        "duplicate_request_ids",
        "non_finite",
        "missing_burst",
        "constant_feature",
        "unit_change",
        "value_range",
        "extreme_values",
        "unseen_categories",
    }
    assert [c.name for c in report.checks[:2]] == ["min_rows", "schema"]
    per_feature = {check.feature for check in report.checks if check.name == "missing_burst"}
    assert per_feature == {"tenure", "usage", "score", "plan"}


def test_a_zeroed_feature_fails_as_constant_and_only_as_constant() -> None:
    table = make_table(seed=3)
    report = validate(changed(table, tenure=np.zeros(ROWS)))
    failure = only_failure(report)
    assert (failure.name, failure.feature, failure.severity) == (
        "constant_feature",
        "tenure",
        "error",
    )
    assert failure.observed == 1.0 and failure.threshold == POLICY.constant_share
    assert failure.message == (
        "tenure is constant (0 in 100.0% of 5,000 values) where the baseline varied (std 8.01)"
    )
    assert not any(c.name == "unit_change" and c.feature == "tenure" for c in report.checks)


def test_a_nearly_constant_feature_fails() -> None:
    table = make_table(seed=4)
    usage = np.full(ROWS, 70.0)
    usage[:10] = table.columns["usage"][:10]  # 99.8% one value
    failure = only_failure(validate(changed(table, usage=usage)))
    assert (failure.name, failure.feature) == ("constant_feature", "usage")
    assert failure.observed == pytest.approx(0.998)
    assert "usage is nearly constant (70 in 99.8% of 5,000 values)" in failure.message


def test_a_unit_change_fails_naming_the_feature_and_factor() -> None:
    table = make_table(seed=5)
    report = validate(changed(table, tenure=num(table, "tenure") * 1000.0))
    failure = only_failure(report)
    assert (failure.name, failure.feature) == ("unit_change", "tenure")
    assert 900.0 < failure.observed < 1100.0 and failure.threshold == 20.0
    assert failure.message.startswith("tenure's spread (IQR 10,")
    assert "a change of unit" in failure.message


def test_a_unit_change_down_fails_too() -> None:
    table = make_table(seed=6)
    failure = only_failure(validate(changed(table, usage=num(table, "usage") / 100.0)))
    assert (failure.name, failure.feature) == ("unit_change", "usage")
    assert 80.0 < failure.observed < 125.0
    assert "is 1/" in failure.message and "usage" in failure.message


def test_a_burst_of_missing_values_fails() -> None:
    table = make_table(seed=7)
    score = table.columns["score"].copy()
    score[np.random.default_rng(7).random(ROWS) < 0.4] = np.nan
    report = validate(changed(table, score=score))
    failure = only_failure(report)
    assert (failure.name, failure.feature) == ("missing_burst", "score")
    assert failure.observed == pytest.approx(0.4, abs=0.03) and failure.threshold == 0.2
    assert "score is missing (NaN) in 4" in failure.message and "above 20.0%" in failure.message
    assert [(w.name, w.feature) for w in report.warnings] == [("nan_not_allowed", "score")]


def test_a_few_missing_values_are_only_a_warning() -> None:
    table = make_table(seed=8)
    score = table.columns["score"].copy()
    score[:50] = np.nan
    report = validate(changed(table, score=score))
    assert report.passed
    warning = report.warnings[0]
    assert (warning.name, warning.feature, warning.observed) == ("nan_not_allowed", "score", 50.0)
    assert "score is NaN in 50 rows (1.0%)" in warning.message


def test_categories_replaced_wholesale_fail() -> None:
    table = make_table(seed=9)
    rng = np.random.default_rng(9)
    plan = rng.choice(np.asarray(["B", "P", "R"]), ROWS, p=PLAN_SHARES)
    failure = only_failure(validate(changed(table, plan=plan)))
    assert (failure.name, failure.feature, failure.observed) == ("unseen_categories", "plan", 1.0)
    assert "plan has categories the baseline never saw in 100.0% of 5,000 rows" in failure.message
    assert "3 new: 'B', 'P', 'R'" in failure.message and "replaced" in failure.message


def test_a_category_stuck_at_one_known_value_fails() -> None:
    table = make_table(seed=10)
    failure = only_failure(validate(changed(table, plan=np.full(ROWS, "basic"))))
    assert (failure.name, failure.feature) == ("constant_feature", "plan")
    assert "plan is constant ('basic' in 100.0% of 5,000 rows)" in failure.message


def test_empty_categories_in_a_burst_fail() -> None:
    table = make_table(seed=11)
    plan = table.columns["plan"].copy()
    plan[: ROWS // 2] = ""
    failure = only_failure(validate(changed(table, plan=plan)))
    assert (failure.name, failure.feature, failure.observed) == ("missing_burst", "plan", 0.5)
    assert "plan is empty in 50.0% of 5,000 rows" in failure.message


def test_a_single_class_fails() -> None:
    table = make_table(seed=12)
    failure = only_failure(validate(changed(table, churned=np.zeros(ROWS))))
    assert (failure.name, failure.feature, failure.observed) == ("classes", TARGET, 1.0)
    assert failure.message == "churned has 1 class ('0'); binary classification needs exactly 2"


def test_a_vanishing_class_fails() -> None:
    table = make_table(seed=13)
    labels = np.zeros(ROWS)
    labels[:30] = 1.0  # 0.6%: the label join lost most positives
    failure = only_failure(validate(changed(table, churned=labels)))
    assert (failure.name, failure.observed, failure.threshold) == ("class_balance", 30.0, 50.0)
    assert "'1', has 30 of 5,000 labelled rows (0.6%); every class needs at least 50" in (
        failure.message
    )


def test_missing_labels_fail() -> None:
    table = make_table(seed=14)
    labels = table.columns[TARGET].copy()
    labels[:7] = np.nan
    failure = only_failure(validate(changed(table, churned=labels)))
    assert (failure.name, failure.feature, failure.observed) == ("missing_labels", TARGET, 7.0)
    assert "churned has 7 missing labels (0.14% of 5,000 rows)" in failure.message


def test_class_names_as_text_are_accepted() -> None:
    table = make_table(seed=15)
    labels = np.where(table.columns[TARGET] == 1.0, "yes", "no").astype(np.str_)
    assert validate(changed(table, churned=labels)).passed
    labels[:3] = ""
    failure = only_failure(validate(changed(table, churned=labels)))
    assert (failure.name, failure.observed) == ("missing_labels", 3.0)


def test_regression_targets_must_be_finite_and_vary() -> None:
    table = make_table(seed=16)
    spend = np.random.default_rng(16).gamma(2.0, 50.0, ROWS)
    assert validate(changed(table, churned=spend), output_kind="regression").passed
    spend[:2] = np.inf
    failure = only_failure(validate(changed(table, churned=spend), output_kind="regression"))
    assert (failure.name, failure.observed) == ("missing_labels", 2.0)
    flat = validate(changed(table, churned=np.full(ROWS, 3.0)), output_kind="regression")
    assert only_failure(flat).name == "constant_target"
    text = validate(changed(table, churned=np.full(ROWS, "3")), output_kind="regression")
    assert only_failure(text).name == "target"


def test_duplicate_request_ids_fail_above_one_percent() -> None:
    table = make_table(seed=17)
    request_ids = ids(ROWS)
    request_ids[:250] = request_ids[250:500]  # 5% repeat an earlier row
    failure = only_failure(validate(table, request_ids=request_ids))
    assert (failure.name, failure.feature) == ("duplicate_request_ids", "")
    assert failure.observed == 0.05 and failure.threshold == 0.01
    assert failure.message.startswith("250 of 5,000 request ids (5.0%) repeat an earlier row")
    request_ids = ids(ROWS)
    request_ids[:10] = request_ids[10:20]  # 0.2%: at-least-once redelivery
    assert validate(table, request_ids=request_ids).passed


def test_too_few_rows_fail() -> None:
    failure = only_failure(validate(make_table(seed=18, rows=150)))
    assert (failure.name, failure.observed, failure.threshold) == ("min_rows", 150.0, 200.0)
    assert (
        failure.message
        == "the window has 150 rows, fewer than the 200 needed to train and evaluate"
    )


def test_an_empty_window_fails_without_crashing() -> None:
    table = make_table(seed=19).take(np.arange(0, dtype=np.int64))
    report = validate(table, request_ids=ids(0))
    assert not report.passed
    assert {c.name for c in report.failures} == {"min_rows", "classes"}


def test_infinite_values_fail() -> None:
    table = make_table(seed=20)
    usage = table.columns["usage"].copy()
    usage[[3, 30, 300]] = [np.inf, -np.inf, np.inf]
    failure = only_failure(validate(changed(table, usage=usage)))
    assert (failure.name, failure.feature, failure.observed) == ("non_finite", "usage", 3.0)
    assert failure.message == (
        "usage has 3 infinite values (0.06% of 5,000 rows); numbers must be finite"
    )


def test_a_missing_or_mistyped_feature_fails_the_schema() -> None:
    table = make_table(seed=21)
    without = Table({k: v for k, v in table.columns.items() if k != "score"})
    failure = only_failure(validate(without))
    assert (failure.name, failure.feature) == ("schema", "score")
    assert "score is not a column of the window" in failure.message
    as_text = changed(table, usage=table.columns["usage"].astype(np.str_))
    failure = only_failure(validate(as_text))
    assert (failure.name, failure.feature) == ("schema", "usage")
    assert "usage should hold numbers (float64)" in failure.message
    extra = changed(table, region=np.full(ROWS, "eu"), latency_ms=np.ones(ROWS))
    assert validate(extra).passed


def test_a_missing_target_fails() -> None:
    table = make_table(seed=22)
    unlabelled = Table({k: v for k, v in table.columns.items() if k != TARGET})
    failure = only_failure(validate(unlabelled))
    assert (failure.name, failure.feature) == ("target", TARGET)


def test_a_few_sentinels_warn_and_many_fail() -> None:
    table = make_table(seed=23)
    tenure = table.columns["tenure"].copy()
    tenure[:50] = -999.0  # 1%: a few outliers
    report = validate(changed(table, tenure=tenure))
    assert report.passed
    warning = report.warnings[0]
    assert (warning.name, warning.feature, warning.severity) == ("value_range", "tenure", "warning")
    assert "tenure has 50 values (1.0% of 5,000 rows)" in warning.message
    assert "such as -999" in warning.message
    tenure[:500] = -999.0  # 10%: a sentinel for missing
    failure = only_failure(validate(changed(table, tenure=tenure)))
    assert (failure.name, failure.feature, failure.observed) == ("value_range", "tenure", 0.1)


def test_one_extreme_value_fails() -> None:
    table = make_table(seed=24)
    score = table.columns["score"].copy()
    score[17] = 1e12
    report = validate(changed(table, score=score))
    failure = only_failure(report)
    assert (failure.name, failure.feature, failure.observed) == ("extreme_values", "score", 1.0)
    assert "such as 1e+12: overflow or garbage" in failure.message
    assert [w.name for w in report.warnings] == ["value_range"]


@pytest.mark.parametrize("shift", [0.5, 1.5, 3.0])
def test_a_mean_shift_in_one_feature_passes(shift: float) -> None:
    table = make_table(seed=25)
    usage = num(table, "usage") + shift * STDS["usage"]
    report = validate(changed(table, usage=usage))
    assert report.passed, [c.message for c in report.failures]
    assert report.warnings == ()


def test_a_half_sigma_shift_in_all_features_passes() -> None:
    report = validate(make_table(seed=26, shift=0.5))
    assert report.passed and report.warnings == ()


def test_a_new_category_at_fifteen_percent_passes() -> None:
    table = make_table(seed=27)
    new = np.random.default_rng(27).random(ROWS) < 0.15
    plan = np.where(new, "enterprise", table.columns["plan"])  # (assigning would truncate)
    report = validate(changed(table, plan=plan))
    assert report.passed
    check = next(c for c in report.checks if c.name == "unseen_categories")
    assert check.passed and 0.13 < check.observed < 0.17
    assert "(1 new: 'enterprise'), at most 50.0% allowed" in check.message


def test_more_spread_and_a_prior_shift_pass() -> None:
    table = make_table(seed=28)
    rng = np.random.default_rng(28)
    tenure = 24.0 + (num(table, "tenure") - 24.0) * 3.0  # three times the spread
    labels = (rng.random(ROWS) < 0.05).astype(np.float64)  # churn falls to 5%
    plan = rng.choice(np.asarray(PLANS), ROWS, p=(0.2, 0.3, 0.5))  # the mix moves
    report = validate(changed(table, tenure=tenure, churned=labels, plan=plan))
    assert report.passed, [c.message for c in report.failures]


def test_without_a_baseline_only_baseline_free_checks_run() -> None:
    table = make_table(seed=29)
    report = validate(table, baseline=None, request_ids=ids(ROWS))
    assert report.passed
    assert {c.name for c in report.checks} <= BASELINE_FREE
    assert [(w.name, w.feature, w.severity) for w in report.warnings] == [
        ("no_baseline", "", "warning")
    ]
    assert "were not checked" in report.warnings[0].message
    zeroed = validate(changed(table, tenure=np.zeros(ROWS)), baseline=None)
    assert zeroed.passed  # constancy needs the baseline to say the feature varied
    usage = table.columns["usage"].copy()
    usage[0] = np.inf
    failure = only_failure(validate(changed(table, usage=usage), baseline=None))
    assert (failure.name, failure.feature) == ("non_finite", "usage")


def test_a_feature_missing_from_the_baseline_is_a_warning() -> None:
    partial = Baseline(numeric=BASELINE.numeric[:2], categorical=BASELINE.categorical)
    report = validate(make_table(seed=30), baseline=partial)
    assert report.passed
    assert [(w.name, w.feature) for w in report.warnings] == [("no_baseline", "score")]


def test_the_report_round_trips_through_json() -> None:
    table = make_table(seed=31)
    score = table.columns["score"].copy()
    score[:2000] = np.nan
    report = validate(changed(table, score=score, tenure=np.zeros(ROWS)), request_ids=ids(ROWS))
    data = report.to_dict()
    text = json.dumps(data, allow_nan=False)
    assert DataReport.from_dict(json.loads(text)) == report
    assert data["passed"] is False and data["rows"] == ROWS
    assert {c["name"] for c in data["checks"] if not c["passed"]} == {
        "constant_feature",
        "missing_burst",
        "nan_not_allowed",
    }
    odd = Check("x", "", False, "warning", float("inf"), 0.0, "m")
    assert Check.from_dict(json.loads(json.dumps(odd.to_dict(), allow_nan=False))) == odd


@pytest.mark.parametrize(
    ("corrupt", "name", "feature", "numbers"),
    [
        (lambda t: changed(t, tenure=np.zeros(ROWS)), "constant_feature", "tenure", "100.0%"),
        (lambda t: changed(t, usage=num(t, "usage") * 1000.0), "unit_change", "usage", "x the"),
        (
            lambda t: changed(t, score=np.where(np.arange(ROWS) % 2 == 0, np.nan, num(t, "score"))),
            "missing_burst",
            "score",
            "50.0% of 5,000 rows",
        ),
        (
            lambda t: changed(t, plan=np.full(ROWS, "platinum")),
            "unseen_categories",
            "plan",
            "100.0%",
        ),
    ],
)
def test_each_failure_names_its_feature_and_numbers(
    corrupt: Callable[[Table], Table], name: str, feature: str, numbers: str
) -> None:
    failure = only_failure(validate(corrupt(make_table(seed=32))))
    assert (failure.name, failure.feature) == (name, feature)
    assert failure.message.startswith(feature) and numbers in failure.message
    assert re.search(r"\d", failure.message.removeprefix(feature))


def test_invalid_arguments_raise() -> None:
    with pytest.raises(ValueError, match="max_missing_share"):
        ValidationPolicy(max_missing_share=1.5)
    with pytest.raises(ValueError, match="scale_ratio"):
        ValidationPolicy(scale_ratio=0.5)
    with pytest.raises(ValueError, match="3 request ids for 5000 rows"):
        validate(make_table(seed=33), request_ids=ids(3))
    with pytest.raises(ValueError, match="severity"):
        Check.from_dict({**Check("a", "", True, "error", 0.0, 0.0, "m").to_dict(), "severity": "x"})
