"""`driftloop drift evaluate` on a small file: the text table, --json alone on stdout, and
its usage errors in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tests.unit.test_cli import assert_one_line, driftloop


def write_rows(path: Path, rows: int = 6000) -> None:
    rng = np.random.default_rng(11)
    x1, x2 = rng.normal(size=rows), rng.lognormal(size=rows)
    plan = rng.choice(np.asarray(["basic", "pro"]), size=rows)
    lines = ["x1,x2,plan", *(f"{a},{b},{c}" for a, b, c in zip(x1, x2, plan, strict=True))]
    path.write_text("\n".join(lines) + "\n")


def test_evaluate_prints_a_table_per_injected_drift(tmp_path: Path) -> None:
    data = tmp_path / "rows.csv"
    write_rows(data)
    result = driftloop(
        "drift", "evaluate", "--data", str(data),
        "--inject", "feature=x1,kind=shift,size=1,onset=2000",
        "--inject", "feature=plan,kind=category,size=0.2",
    )  # fmt: skip
    assert result.returncode == 0, result
    lines = result.stdout.splitlines()
    assert lines[0] == "x1: shift 1 at event 2,000 (4,000 events replayed, 2,000 before the onset)"
    assert lines[1].split() == ["detector", "detected", "delay", "false", "alarms", "per", "10k",
                                "stable"]  # fmt: skip
    assert [line.split()[:2] for line in lines[2:5]] == [
        ["driftloop", "online"], ["river", "ADWIN"], ["river", "PageHinkley"]
    ]  # fmt: skip
    assert lines[5].startswith("plan: category 0.2 at event 2,000")
    assert lines[-1] == "  note: river: plan is not numeric"


def test_evaluate_json_is_the_outcomes_alone(tmp_path: Path) -> None:
    data = tmp_path / "rows.csv"
    write_rows(data)
    result = driftloop(
        "drift", "evaluate", "--data", str(data), "--reference-rows", "1000", "--no-river",
        "--inject", "feature=x1,kind=shift,size=1,onset=2500", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result
    answer = json.loads(result.stdout)
    assert answer["events"] == 5000
    [evaluation] = answer["evaluations"]
    assert evaluation["injection"] == {"feature": "x1", "kind": "shift", "size": 1.0, "onset": 2500}
    [outcome] = evaluation["outcomes"]
    assert outcome["detector"] == "driftloop online" and outcome["detected"] is True
    assert 0 < outcome["delay"] < 100 and outcome["false_alarms"] == 0
    assert outcome["stable_events"] == 2500 and outcome["false_alarms_per_10k"] == 0.0


def test_evaluate_usage_errors_are_one_line(tmp_path: Path) -> None:
    data = tmp_path / "rows.csv"
    write_rows(data, rows=500)
    melt = ("--reference-rows", "100", "--inject", "feature=x1,kind=melt")
    assert_one_line(driftloop("drift", "evaluate", "--data", str(data), *melt), "kind 'melt'")
    assert_one_line(
        driftloop("drift", "evaluate", "--data", str(data), "--inject", "feature=x1,kind=shift"),
        "--reference-rows 2000",
        "500 rows",
    )
    assert_one_line(
        driftloop("drift", "evaluate", "--inject", "feature=x1,kind=shift"), "--data FILE"
    )
    assert_one_line(
        driftloop("drift", "evaluate", "--data", str(tmp_path / "none.csv"), "--inject",
                  "feature=x1,kind=shift"),
        "no such file",
    )  # fmt: skip
