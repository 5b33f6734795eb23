"""What the windowed report's drift rule catches on seeded streams: the README's table.

    .venv/bin/python bench/drift_rule_table.py            (about two minutes; prints Markdown)

The version of tests/drift_streams (20 standard-normal features, trained on 5,000 rows,
plus the categorical `plan` frozen from 5,000 rows) is reported on windows of 10k, 100k
and 1M rows by build_report, as the drift service does:
  - stable: the stable process;
  - ramp to d sigma: x3 and x11 are the last N rows of a ramp that takes 10 N rows to
    reach d, so the window sees their offset rise from 0.9 d to d;
  - plan moved s: a share s of the rows moves from 'basic' (40%) to 'trial' (10%).
For the drifting streams it prints the smallest PSI and effect size (KS D, or total
variation distance for `plan`) and the largest p-value of the test against the negligible
margin, then what each part of the rule passes and what is flagged, by the rule with the
default settings and by the old rule (plain test after Benjamini-Hochberg, then PSI >=
0.1 alone). "Other" counts flags on the streams that did not move (false alarms).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from driftloop.drift.report import Report, StreamResult, Thresholds, build_report  # noqa: E402
from driftloop.models.table import Table  # noqa: E402
from driftloop.models.training import TrainedModel  # noqa: E402
from tests import drift_streams  # noqa: E402

SIZES = (10_000, 100_000, 1_000_000)
RAMPED = ("x3", "x11")
RULE = Thresholds()
OLD_RULE = Thresholds(effect_threshold=1.0, negligible=0.0)


@dataclass(frozen=True)
class Scenario:
    name: str
    streams: tuple[str, ...]  # the streams that moved (none: stable)
    reach: float = 0.0  # ramp offset of x3 and x11, in sigma
    moved: float = 0.0  # share of rows moved between plan categories


SCENARIOS = (
    Scenario("stable", ()),
    Scenario("ramp to 0.1 sigma", RAMPED, reach=0.1),
    Scenario("ramp to 0.25 sigma", RAMPED, reach=0.25),
    Scenario("ramp to 0.5 sigma", RAMPED, reach=0.5),
    Scenario("plan moved 2%", ("plan",), moved=0.02),
    Scenario("plan moved 5%", ("plan",), moved=0.05),
    Scenario("plan moved 8%", ("plan",), moved=0.08),
    Scenario("plan moved 12%", ("plan",), moved=0.12),
)


def rows_of(scenario: Scenario, rows: int, seed: int) -> Table:
    if not scenario.reach:
        return drift_streams.table(rows, seed)
    # The last `rows` rows of a ramp over 10 x rows: offsets from 0.9 reach to reach.
    columns = dict(drift_streams.table(rows, seed).columns)
    offset = scenario.reach * np.linspace(0.9, 1.0, rows)
    for name in RAMPED:
        columns[name] = np.asarray(columns[name], dtype=np.float64) + offset
    return Table(columns)


def reports(trained: TrainedModel, scenario: Scenario, rows: int, seed: int) -> list[Report]:
    data = rows_of(scenario, rows, seed)
    plan = drift_streams.plans(rows, seed + 1, moved=scenario.moved)
    window = drift_streams.window_data(trained, data, labelled=False, categories={"plan": plan})
    return [
        build_report("bench", "1", "last_n", "binary", trained.baseline, window, limits)
        for limits in (RULE, OLD_RULE)
    ]


def flags(report: Report, scenario: Scenario) -> str:
    drifted = {f.stream for f in report.features if f.drifted}
    moved = sum(s in drifted for s in scenario.streams)
    other = len(drifted) - moved
    if not scenario.streams:
        return f"{other} other"
    return f"{moved}/{len(scenario.streams)}" + (f", {other} other" if other else "")


def row(trained: TrainedModel, scenario: Scenario, rows: int, seed: int) -> str:
    rule, old = reports(trained, scenario, rows, seed)
    by_name = {f.stream: f for f in rule.features}
    watched: list[StreamResult] = (
        [by_name[s] for s in scenario.streams] if scenario.streams else rule.features
    )
    if scenario.streams:
        psi_, effect, p = (
            min(f.psi for f in watched),
            min(f.effect for f in watched),
            max(f.p_value for f in watched),
        )
    else:  # stable: the worst case over every stream
        psi_, effect, p = (
            max(f.psi for f in watched),
            max(f.effect for f in watched),
            min(f.p_value for f in watched),
        )
    cells = [
        scenario.name,
        f"{rows:,}",
        f"{psi_:.3f}",
        f"{effect:.3f}",
        f"{p:.1e}",
        _yes(psi_ >= RULE.psi_threshold),
        _yes(effect >= RULE.effect_threshold),
        _yes(p <= RULE.fdr_alpha),
        flags(rule, scenario),
        flags(old, scenario),
    ]
    return "| " + " | ".join(cells) + " |"


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def main() -> None:
    trained = drift_streams.with_plan(drift_streams.train())
    print(
        "| window | rows | PSI | effect (D / TVD) | p vs negligible | PSI >= 0.1 "
        "| effect >= 0.08 | significant | flagged (rule) | flagged (old: PSI gate) |"
    )
    print("|---|---:|---:|---:|---:|---|---|---|---|---|")
    for number, scenario in enumerate(SCENARIOS):
        for rows in SIZES:
            print(row(trained, scenario, rows, seed=1000 + 10 * number), flush=True)


if __name__ == "__main__":
    main()
