"""The data-validation gate of retraining: is a training window fit to train on?

A training window is what serving logged (the features of each request) joined with the
labels that arrived later. Before the retrainer fits a challenger on it, this gate looks for
corruption: data that no longer measures what the champion was trained on, so that training
would learn the bug. It must not stop expected drift, which is the reason to retrain at all.
What separates the two: drift moves a distribution (its location, its mix of categories, its
class prior) and keeps what each feature is; corruption changes what a feature is: it stops
varying, changes its unit, goes missing, holds impossible values, or its categories are other
names altogether. Each check measures one such property, a property that drift leaves alone.
The baseline-relative checks compare with the champion's `Baseline`, frozen from its training
data; the defaults below are those of `ValidationPolicy`.

Dataset checks, in report order:

- min_rows (200, error). Below it the 20% holdout of training has under 40 rows, too few
  for the promotion metrics (an AUC on 40 rows has a standard error of 0.05 or more) and for
  the shares measured below.
- schema (error, per feature). Every feature of the champion's schema is a column of its kind:
  float64 for numbers, str for categories (a number column read as text means a value that is
  no number, such as "N/A"). Other columns besides the target are ignored: logs carry more.
- target, missing_labels (error). The target column exists (numbers for regression) and no
  label is missing (NaN, +-inf or ""): an unlabelled row is a failed join, not an example.
- classes, class_balance (error, classifiers). At least 2 classes (binary: exactly 2), and
  every class has max(min_class_count = 10, min_class_share = 1% of the labelled rows): fewer
  can be neither learnt nor evaluated. A prior shift leaves a class at well above 1%; a label
  pipeline that lost a class does not. Rare-event problems (fraud) lower min_class_share.
- constant_target (error, regression). A target that never varies is a broken join.
- duplicate_request_ids (error above max_duplicate_share = 1%, only when ids are given).
  Each request is logged once; at-least-once delivery redelivers a few, while a many-to-many
  join of features and labels repeats many rows and weights them twice. Drift makes none.
- no_baseline (warning). Without the champion's baseline (a first model) the checks that
  compare with it are skipped, and this check says so; the baseline-free checks still run.
  A feature the baseline does not cover gets the same warning, naming the feature.

Per numeric feature:

- non_finite (error, any). +-inf: no unit and no drift makes a quantity infinite; it is an
  overflow or a division by zero, and it breaks the standardisation in training.
- nan_not_allowed (warning, only where the schema forbids NaN). The server rejects such rows,
  so the NaN come from logging or the join; training would impute them with the mean.
- missing_burst (error). NaN share above the baseline's plus max_missing_share = 0.2 (20
  percentage points). A changing population moves missingness by a few points; tens of
  points at once is a producer or a join that broke.
- constant_feature (error). Where the baseline varied (std > 0 and more than 2 decile bins,
  so no single value held about 80% of it), one value holds more than constant_share = 99.5%
  of the window's values, or their std is below constant_std (1e-9) x max(1, |mean|), equal
  up to rounding. This is the unit bug that zeroes a field, or a default filled in everywhere.
  Drift shifts or spreads values; even a 3 sigma mean shift leaves the std as it was.
- unit_change (error). The window's robust spread (the IQR; the mean absolute deviation from
  the median when either IQR is 0, as for zero-inflated features) differs from the spread of
  the baseline's reference sample by more than scale_ratio = 20 either way. A mean shift of
  any size moves location, not spread, and populations rarely spread 5 times more or less.
  Unit changes are factors of 24 (days, hours), 60, 100 (percent and fraction, m and cm) or
  1000 (kg and g, s and ms), all above 20; 100 as the limit would sit exactly on cm and m.
  Factors of 12 (years, months) or 2.2 (kg, lb) cannot be told from drift by spread alone.
- value_range (error above max_out_of_range_share = 5% of rows, warning below). Values more
  than range_margin = 1 baseline range (max - min of its reference sample) beyond its extremes.
  A normal feature's margin is about 7 sigma beyond its extremes, so a 1-3 sigma shift stays
  inside; sentinels (-999 for missing) and a unit change in some rows (one client sending
  grams) do not. A few such values are outliers worth a look, not a reason to stop.
- extreme_values (error, any). Values more than extreme_range_margin = 1000 baseline ranges
  beyond its extremes: overflow or garbage (1e300), where even one value dominates the mean
  and std that standardise the feature in training.

A feature failing constant_feature is not checked for unit_change and value range, and one
failing unit_change not for value range: one cause, one failure. A feature without a finite
value gets only its missing checks.

Per categorical feature (the empty string is a missing value, as `read_table` reads nulls):

- unseen_categories (error). The share of rows whose category the baseline never saw above
  max_unseen_share = 0.5: the category set was replaced (codes renamed, another column, a new
  encoding). A new product or region at a moderate share (10-20%) leaves most rows in known
  categories and passes; retraining is what teaches the model the new category.
- missing_burst (error). The share of "" above the baseline's plus max_missing_share.
- constant_feature (error). One category holds more than constant_share of the rows where the
  baseline's most common category held at most 80% (the numeric rule's "varied").

Severity "error" blocks training (`DataReport.passed` is False); "warning" is shown, never
blocks. A check fails when `observed` is above `threshold`; the at-least checks (min_rows,
schema, target, classes, class_balance, constant_target) fail below it, and a binary target's
classes when not exactly 2. Pure: no I/O, no logging, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from driftloop.models.baseline import Baseline, CategoricalBaseline, NumericBaseline
from driftloop.models.schema import Feature, OutputKind, Schema
from driftloop.models.table import Column, Table

Severity = Literal["error", "warning"]
FloatArray = npt.NDArray[np.float64]
StrArray = npt.NDArray[np.str_]

OUTPUT_KINDS: tuple[OutputKind, ...] = ("binary", "multiclass", "regression")
# The most common value or category held at most this share of a baseline that "varied".
VARIED_TOP_SHARE = 0.8
# How many unseen categories or classes a message names.
NAMED = 3


@dataclass(frozen=True)
class ValidationPolicy:
    """The gate's thresholds; the module docstring argues each default."""

    min_rows: int = 200  # a 20% holdout of 40 rows is the least that evaluates
    max_missing_share: float = 0.2  # NaN or "" share allowed above the baseline's
    max_duplicate_share: float = 0.01  # at-least-once delivery, not a bad join
    min_class_share: float = 0.01  # every class: this share of labelled rows...
    min_class_count: int = 10  # ...and at least this many rows
    scale_ratio: float = 20.0  # spread change (either way) that is a unit change
    constant_share: float = 0.995  # one value in more than this share: constant
    constant_std: float = 1e-9  # std below this x max(1, |mean|): constant
    max_unseen_share: float = 0.5  # rows in unseen categories: the set was replaced
    range_margin: float = 1.0  # baseline ranges beyond its extremes: out of range
    max_out_of_range_share: float = 0.05  # out-of-range rows above this: an error
    extreme_range_margin: float = 1000.0  # baseline ranges beyond: garbage, even once

    def __post_init__(self) -> None:
        shares = {
            "max_missing_share": self.max_missing_share,
            "max_duplicate_share": self.max_duplicate_share,
            "min_class_share": self.min_class_share,
            "constant_share": self.constant_share,
            "max_unseen_share": self.max_unseen_share,
            "max_out_of_range_share": self.max_out_of_range_share,
        }
        for name, value in shares.items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        if self.min_rows < 1 or self.min_class_count < 1:
            raise ValueError("min_rows and min_class_count must be at least 1")
        if not self.scale_ratio > 1.0:
            raise ValueError(f"scale_ratio must be above 1, got {self.scale_ratio}")
        if not self.constant_std >= 0.0:
            raise ValueError(f"constant_std must be non-negative, got {self.constant_std}")
        if not 0.0 <= self.range_margin < self.extreme_range_margin:
            raise ValueError("range_margin must be non-negative and below extreme_range_margin")


@dataclass(frozen=True)
class Check:
    """One finding. `feature` is "" for the dataset-level checks. `severity` is what a
    failure means ("error" blocks training, "warning" does not); `observed` is compared with
    `threshold` as the module docstring says; `message` is one sentence with the numbers."""

    name: str
    feature: str
    passed: bool
    severity: Severity
    observed: float
    threshold: float
    message: str

    def __post_init__(self) -> None:
        if self.severity not in ("error", "warning"):
            raise ValueError(f"severity must be 'error' or 'warning', got {self.severity!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "feature": self.feature,
            "passed": self.passed,
            "severity": self.severity,
            "observed": _encode(self.observed),
            "threshold": _encode(self.threshold),
            "message": self.message,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Check:
        severity = data["severity"]
        if severity not in ("error", "warning"):
            raise ValueError(f"severity must be 'error' or 'warning', got {severity!r}")
        return cls(
            name=str(data["name"]),
            feature=str(data["feature"]),
            passed=bool(data["passed"]),
            severity="error" if severity == "error" else "warning",
            observed=float(data["observed"]),
            threshold=float(data["threshold"]),
            message=str(data["message"]),
        )


@dataclass(frozen=True)
class DataReport:
    """The gate's verdict on a window of `rows` rows: every check it ran, in order."""

    rows: int
    checks: tuple[Check, ...]

    @property
    def passed(self) -> bool:
        """Fit to train on: no check of severity "error" failed."""
        return not self.failures

    @property
    def failures(self) -> tuple[Check, ...]:
        """The failed checks of severity "error": why training is blocked."""
        return tuple(c for c in self.checks if not c.passed and c.severity == "error")

    @property
    def warnings(self) -> tuple[Check, ...]:
        """The failed checks of severity "warning": worth a look, not blocking."""
        return tuple(c for c in self.checks if not c.passed and c.severity == "warning")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable (strict JSON: no NaN or infinity). "passed" is for readers;
        `from_dict` recomputes it from the checks."""
        return {
            "rows": self.rows,
            "passed": self.passed,
            "checks": [check.to_dict() for check in self.checks],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DataReport:
        return cls(int(data["rows"]), tuple(Check.from_dict(item) for item in data["checks"]))


def validate_training_data(
    table: Table,
    schema: Schema,
    target: str,
    output_kind: OutputKind,
    baseline: Baseline | None,
    policy: ValidationPolicy,
    request_ids: StrArray | None = None,
) -> DataReport:
    """Check a training window (features logged at serving joined with labels) against the
    champion's schema and baseline; see the module docstring for the checks. `request_ids`
    (one per row) enables the duplicate check. Raises ValueError for a caller's mistake (an
    unknown output kind, request ids of another length), never for bad data."""
    if output_kind not in OUTPUT_KINDS:
        raise ValueError(f"output_kind must be one of {', '.join(OUTPUT_KINDS)}")
    rows = table.rows
    if request_ids is not None and len(request_ids) != rows:
        raise ValueError(f"{len(request_ids)} request ids for {rows} rows")
    checks = [_min_rows(rows, policy)]
    present: list[Feature] = []
    for feature in schema.features:
        check = _schema(table, feature)
        checks.append(check)
        if check.passed:
            present.append(feature)
    checks.extend(_target(table, target, output_kind, policy))
    if request_ids is not None:
        checks.append(_duplicates(request_ids, policy))
    if baseline is None:
        checks.append(
            Check(
                "no_baseline",
                "",
                False,
                "warning",
                0.0,
                0.0,
                "no baseline of the champion: missing bursts, constant features, unit "
                "changes, value ranges and category replacement were not checked",
            )
        )
    if rows == 0:
        return DataReport(rows, tuple(checks))
    numeric = {b.feature: b for b in baseline.numeric} if baseline is not None else {}
    categorical = {b.feature: b for b in baseline.categorical} if baseline is not None else {}
    for feature in present:
        column = table.columns[feature.name]
        if feature.kind == "number":
            values = column.astype(np.float64)
            checks.extend(_numeric(feature, values, numeric.get(feature.name), policy))
            usable = feature.name in numeric and len(numeric[feature.name].sample) > 0
        else:
            values_str = column.astype(np.str_)
            base = categorical.get(feature.name)
            checks.extend(_categorical(feature.name, values_str, base, policy))
            usable = base is not None and len(base.categories) > 0
        if baseline is not None and not usable:
            checks.append(
                Check(
                    "no_baseline",
                    feature.name,
                    False,
                    "warning",
                    0.0,
                    0.0,
                    f"{feature.name} has no baseline values: its baseline checks were skipped",
                )
            )
    return DataReport(rows, tuple(checks))


def _min_rows(rows: int, policy: ValidationPolicy) -> Check:
    passed = rows >= policy.min_rows
    message = (
        f"the window has {rows:,} rows (at least {policy.min_rows:,} needed)"
        if passed
        else f"the window has {rows:,} rows, fewer than the {policy.min_rows:,} needed to "
        "train and evaluate"
    )
    return Check("min_rows", "", passed, "error", float(rows), float(policy.min_rows), message)


def _schema(table: Table, feature: Feature) -> Check:
    name = feature.name
    if name not in table.columns:
        message = f"{name} is not a column of the window (columns: {_listed(table)})"
        return Check("schema", name, False, "error", 0.0, 1.0, message)
    dtype = table.columns[name].dtype
    expected = "f" if feature.kind == "number" else "U"
    wanted = "numbers (float64)" if feature.kind == "number" else "categories (str)"
    if dtype.kind != expected:
        message = f"{name} should hold {wanted} but the column is {dtype}"
        return Check("schema", name, False, "error", 0.0, 1.0, message)
    return Check("schema", name, True, "error", 1.0, 1.0, f"{name} is present as {wanted}")


def _target(
    table: Table, target: str, output_kind: OutputKind, policy: ValidationPolicy
) -> list[Check]:
    if target not in table.columns:
        message = f"the target {target} is not a column of the window (columns: {_listed(table)})"
        return [Check("target", target, False, "error", 0.0, 1.0, message)]
    column = table.columns[target]
    kinds = "f" if output_kind == "regression" else "fU"
    if column.dtype.kind not in kinds:
        wanted = "numbers" if output_kind == "regression" else "numbers or class names"
        message = f"the {output_kind} target {target} should hold {wanted}, not {column.dtype}"
        return [Check("target", target, False, "error", 0.0, 1.0, message)]
    checks = [Check("target", target, True, "error", 1.0, 1.0, f"the target {target} is present")]
    if column.dtype.kind == "f":
        numbers = column.astype(np.float64)
        missing = ~np.isfinite(numbers)
    else:
        missing = column.astype(np.str_) == ""
    count, rows = int(missing.sum()), len(column)
    message = (
        f"{target} has {count:,} missing labels ({_pct(count, rows)} of {rows:,} rows); "
        "every row needs one"
        if count
        else f"{target} has a label in all {rows:,} rows"
    )
    checks.append(Check("missing_labels", target, count == 0, "error", float(count), 0.0, message))
    labelled = column[~missing]
    if output_kind == "regression":
        checks.extend(_constant_target(target, labelled.astype(np.float64), policy))
    else:
        checks.extend(_classes(target, _class_names(labelled), output_kind, policy))
    return checks


def _class_names(labels: Column) -> StrArray:
    """Class names as training names them: numbers formatted with %g, text as it is."""
    if labels.dtype.kind == "f":
        return np.asarray([f"{v:g}" for v in labels.tolist()], dtype=np.str_)
    return labels.astype(np.str_)


def _classes(
    target: str, names: StrArray, output_kind: OutputKind, policy: ValidationPolicy
) -> list[Check]:
    classes, counts = np.unique(names, return_counts=True)
    found = len(classes)
    listed = ", ".join(_quote(str(c)) for c in classes[:NAMED]) + (", ..." if found > NAMED else "")
    wanted = "exactly 2" if output_kind == "binary" else "at least 2"
    passed = found == 2 if output_kind == "binary" else found >= 2
    message = f"{target} has {found} class{'es' if found != 1 else ''}" + (
        f" ({listed})" if found else ""
    )
    if not passed:
        message += f"; {output_kind} classification needs {wanted}"
    checks = [Check("classes", target, passed, "error", float(found), 2.0, message)]
    if found < 2:
        return checks
    labelled = int(counts.sum())
    needed = max(policy.min_class_count, math.ceil(policy.min_class_share * labelled))
    rarest = int(counts.argmin())
    smallest = int(counts[rarest])
    ok = smallest >= needed
    rule = (
        f"at least {needed:,} ({_pct(policy.min_class_share, 1.0)} of them and at least "
        f"{policy.min_class_count:,})"
    )
    message = (
        f"the rarest class of {target}, {_quote(str(classes[rarest]))}, has {smallest:,} of "
        f"{labelled:,} labelled rows ({_pct(smallest, labelled)}); "
        + ("every class has " if ok else "every class needs ")
        + rule
    )
    checks.append(
        Check("class_balance", target, ok, "error", float(smallest), float(needed), message)
    )
    return checks


def _constant_target(target: str, values: FloatArray, policy: ValidationPolicy) -> list[Check]:
    if values.size == 0:
        return []
    mean, std = float(values.mean()), float(values.std())
    limit = policy.constant_std * max(1.0, abs(mean))
    constant = std < limit
    message = (
        f"{target} is constant ({_num(mean)} in all {values.size:,} labelled rows)"
        if constant
        else f"{target} varies (std {_num(std)})"
    )
    return [Check("constant_target", target, not constant, "error", std, limit, message)]


def _duplicates(request_ids: StrArray, policy: ValidationPolicy) -> Check:
    rows = len(request_ids)
    repeated = rows - len(np.unique(request_ids))
    share = repeated / rows if rows else 0.0
    passed = share <= policy.max_duplicate_share
    limit = _pct(policy.max_duplicate_share, 1.0)
    message = (
        f"{repeated:,} of {rows:,} request ids ({_pct(repeated, rows)}) repeat an earlier row"
        + (
            f" (at most {limit} allowed)"
            if passed
            else f", more than {limit}: rows were logged or joined more than once"
        )
    )
    return Check(
        "duplicate_request_ids",
        "",
        passed,
        "error",
        share,
        policy.max_duplicate_share,
        message,
    )


def _numeric(
    feature: Feature,
    values: FloatArray,
    base: NumericBaseline | None,
    policy: ValidationPolicy,
) -> list[Check]:
    name, rows = feature.name, values.size
    nan = np.isnan(values)
    infinite = np.isinf(values)
    finite = values[~nan & ~infinite]
    count = int(infinite.sum())
    message = (
        f"{name} has {count:,} infinite values ({_pct(count, rows)} of {rows:,} rows); "
        "numbers must be finite"
        if count
        else f"{name} has no infinite values"
    )
    checks = [Check("non_finite", name, count == 0, "error", float(count), 0.0, message)]
    missing = int(nan.sum())
    if not feature.allow_nan:
        message = (
            f"{name} is NaN in {missing:,} rows ({_pct(missing, rows)}) where the schema "
            "allows no NaN; training would impute them"
            if missing
            else f"{name} has no NaN, as its schema requires"
        )
        checks.append(
            Check("nan_not_allowed", name, missing == 0, "warning", float(missing), 0.0, message)
        )
    if base is None or not base.sample:
        return checks
    checks.append(
        _missing_burst(name, missing, rows, base.nan_share, "missing (NaN)", policy),
    )
    if finite.size == 0:
        return checks
    constant = _constant_numeric(name, finite, base, policy)
    checks.append(constant)
    if not constant.passed:
        return checks
    sample = np.asarray(base.sample, dtype=np.float64)
    unit = _unit_change(name, finite, sample, policy)
    if unit is not None:
        checks.append(unit)
        if not unit.passed:
            return checks
    checks.extend(_value_range(name, finite, rows, sample, policy))
    return checks


def _missing_burst(
    name: str, missing: int, rows: int, baseline_share: float, what: str, policy: ValidationPolicy
) -> Check:
    share = missing / rows
    limit = baseline_share + policy.max_missing_share
    passed = share <= limit
    message = (
        f"{name} is {what} in {_pct(missing, rows)} of {rows:,} rows against "
        f"{_pct(baseline_share, 1.0)} in the baseline"
    ) + (
        f" (at most {_pct(limit, 1.0)} allowed)"
        if passed
        else f", above {_pct(limit, 1.0)}: a burst of missing values"
    )
    return Check("missing_burst", name, passed, "error", share, limit, message)


def _constant_numeric(
    name: str, finite: FloatArray, base: NumericBaseline, policy: ValidationPolicy
) -> Check:
    values, counts = np.unique(finite, return_counts=True)
    top = int(counts.argmax())
    top_share = float(counts[top]) / finite.size
    mean, std = float(finite.mean()), float(finite.std())
    rounding = std < policy.constant_std * max(1.0, abs(mean))
    observed = 1.0 if rounding else top_share
    varied = base.std > 0 and len(base.frequencies) > 2
    constant = rounding or top_share > policy.constant_share
    common = _num(float(values[top]))
    if not varied:
        message = (
            f"{name} is not checked for constancy: its baseline barely varied "
            f"(std {_num(base.std)}, {len(base.frequencies)} decile bins)"
        )
        return Check("constant_feature", name, True, "error", observed, 1.0, message)
    if constant:
        what = "constant" if observed >= 1.0 else "nearly constant"
        message = (
            f"{name} is {what} ({common} in {_pct(observed, 1.0)} of {finite.size:,} "
            f"values) where the baseline varied (std {_num(base.std)})"
        )
    else:
        message = (
            f"{name} varies: its most common value ({common}) is in "
            f"{_pct(top_share, 1.0)} of {finite.size:,} values, std {_num(std)}"
        )
    return Check(
        "constant_feature", name, not constant, "error", observed, policy.constant_share, message
    )


def _unit_change(
    name: str, finite: FloatArray, sample: FloatArray, policy: ValidationPolicy
) -> Check | None:
    measure, window, baseline = "IQR", _iqr(finite), _iqr(sample)
    if window <= 0.0 or baseline <= 0.0:
        measure = "mean absolute deviation"
        window, baseline = _mean_deviation(finite), _mean_deviation(sample)
    if window <= 0.0 or baseline <= 0.0:
        return None
    ratio = window / baseline
    factor = max(ratio, 1.0 / ratio)
    passed = factor <= policy.scale_ratio
    relation = f"{_num(factor)}x" if ratio >= 1.0 else f"1/{_num(factor)} of"
    message = (
        f"{name}'s spread ({measure} {_num(window)}) is {relation} the baseline's "
        f"({_num(baseline)})"
        + (
            f", within a factor of {_num(policy.scale_ratio)}"
            if passed
            else f", beyond a factor of {_num(policy.scale_ratio)}: a change of unit"
        )
    )
    return Check("unit_change", name, passed, "error", factor, policy.scale_ratio, message)


def _value_range(
    name: str, finite: FloatArray, rows: int, sample: FloatArray, policy: ValidationPolicy
) -> list[Check]:
    low, high = float(sample[0]), float(sample[-1])
    span = high - low
    if span <= 0.0:
        return []
    bounds = f"[{_num(low)}, {_num(high)}]"
    beyond = np.maximum(low - finite, finite - high) / span  # in baseline ranges, <0 inside
    outside = int((beyond > policy.range_margin).sum())
    share = outside / rows
    margin = f"{_num(policy.range_margin)} baseline range ({_num(span)})"
    severity: Severity
    if share > policy.max_out_of_range_share:
        passed, severity, threshold = False, "error", policy.max_out_of_range_share
    elif outside:
        passed, severity, threshold = False, "warning", 0.0
    else:
        passed, severity, threshold = True, "error", policy.max_out_of_range_share
    if outside:
        farthest = float(finite[int(beyond.argmax())])
        message = (
            f"{name} has {outside:,} values ({_pct(outside, rows)} of {rows:,} rows) more "
            f"than {margin} outside the baseline's {bounds}, such as {_num(farthest)}"
            + (
                f"; above {_pct(policy.max_out_of_range_share, 1.0)} they are no outliers"
                if severity == "error"
                else f"; outliers, below the {_pct(policy.max_out_of_range_share, 1.0)} limit"
            )
        )
    else:
        message = f"{name} stays within {margin} of the baseline's {bounds}"
    checks = [Check("value_range", name, passed, severity, share, threshold, message)]
    extreme = int((beyond > policy.extreme_range_margin).sum())
    if extreme:
        farthest = float(finite[int(beyond.argmax())])
        message = (
            f"{name} has {extreme:,} values more than {_num(policy.extreme_range_margin)} "
            f"baseline ranges ({_num(span)}) outside the baseline's {bounds}, such as "
            f"{_num(farthest)}: overflow or garbage"
        )
    else:
        message = (
            f"{name} has no value beyond {_num(policy.extreme_range_margin)} baseline ranges "
            f"of the baseline's {bounds}"
        )
    checks.append(
        Check("extreme_values", name, extreme == 0, "error", float(extreme), 0.0, message)
    )
    return checks


def _categorical(
    name: str, values: StrArray, base: CategoricalBaseline | None, policy: ValidationPolicy
) -> list[Check]:
    if base is None or not base.categories:
        return []
    rows = values.size
    empty = values == ""
    known = np.asarray(base.categories, dtype=np.str_)
    unseen_mask = ~empty & ~np.isin(values, known)
    unseen = int(unseen_mask.sum())
    share = unseen / rows
    passed = share <= policy.max_unseen_share
    if unseen:
        new, counts = np.unique(values[unseen_mask], return_counts=True)
        order = np.argsort(-counts, kind="stable")[:NAMED]
        listed = ", ".join(_quote(str(new[i])) for i in order.tolist())
        kinds = f"{len(new)} new: {listed}{', ...' if len(new) > NAMED else ''}"
        message = (
            f"{name} has categories the baseline never saw in {_pct(unseen, rows)} of "
            f"{rows:,} rows ({kinds})"
            + (
                f", above {_pct(policy.max_unseen_share, 1.0)}: the categories were replaced"
                if not passed
                else f", at most {_pct(policy.max_unseen_share, 1.0)} allowed"
            )
        )
    else:
        message = f"{name} has only categories the baseline knows"
    checks = [
        Check("unseen_categories", name, passed, "error", share, policy.max_unseen_share, message)
    ]
    frequencies = dict(zip(base.categories, base.frequencies, strict=True))
    checks.append(
        _missing_burst(name, int(empty.sum()), rows, frequencies.get("", 0.0), "empty", policy)
    )
    present = values[~empty]
    if not passed or present.size == 0:
        return checks
    categories, counts = np.unique(present, return_counts=True)
    top = int(counts.argmax())
    top_share = float(counts[top]) / present.size
    base_top = max(frequencies.values())
    common = _quote(str(categories[top]))
    if len(base.categories) < 2 or base_top > VARIED_TOP_SHARE:
        message = (
            f"{name} is not checked for constancy: its baseline's most common category held "
            f"{_pct(base_top, 1.0)}"
        )
        checks.append(
            Check(
                "constant_feature", name, True, "error", top_share, policy.constant_share, message
            )
        )
        return checks
    constant = top_share > policy.constant_share
    message = (
        f"{name} is constant ({common} in {_pct(top_share, 1.0)} of {present.size:,} rows) "
        f"where the baseline's most common category held {_pct(base_top, 1.0)}"
        if constant
        else f"{name} varies: its most common category ({common}) is in "
        f"{_pct(top_share, 1.0)} of {present.size:,} rows"
    )
    checks.append(
        Check(
            "constant_feature",
            name,
            not constant,
            "error",
            top_share,
            policy.constant_share,
            message,
        )
    )
    return checks


def _iqr(values: FloatArray) -> float:
    q1, q3 = np.quantile(values, [0.25, 0.75])
    return float(q3 - q1)


def _mean_deviation(values: FloatArray) -> float:
    return float(np.mean(np.abs(values - np.median(values))))


def _num(value: float) -> str:
    """A number for a message: 3 significant digits below 100, whole with thousands
    separators from 100 to a billion."""
    if not math.isfinite(value) or value == 0.0:
        return f"{value:g}"
    size = abs(value)
    if size < 100.0 or size >= 1e9:
        return f"{value:.3g}"
    return f"{value:,.0f}"


def _pct(part: float, whole: float) -> str:
    """A share as a percentage: one decimal, two significant digits below 1%."""
    share = part / whole if whole else 0.0
    if share == 0.0:
        return "0%"
    if share < 0.01:
        return f"{share * 100:.2g}%"
    return f"{share:.1%}"


def _listed(table: Table, limit: int = 8) -> str:
    """The window's column names for a message, at most `limit` of them."""
    names = sorted(table.columns)
    if not names:
        return "none"
    more = f", ... ({len(names):,} in all)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _quote(text: str, limit: int = 40) -> str:
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."


def _encode(value: float) -> float | str:
    """Strict JSON has no NaN or infinity: those travel as "nan", "inf", "-inf"."""
    return value if math.isfinite(value) else repr(value)
