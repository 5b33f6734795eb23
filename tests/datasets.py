"""Seeded datasets for model tests and benchmarks."""

from __future__ import annotations

import numpy as np

from driftloop.models.table import Column, Table


def churn(rows: int = 2000, seed: int = 1, numbers: int = 6) -> Table:
    """A binary target driven by x0, x1 and the plan; NaN in x2; two categories."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(numbers, rows))
    plan = rng.choice(["basic", "family", "pro"], size=rows).astype(np.str_)
    z = 1.5 * x[0] - x[1] + 0.8 * (plan == "pro")
    x[2][rng.random(rows) < 0.05] = np.nan
    columns: dict[str, Column] = {f"x{i}": x[i] for i in range(numbers)}
    columns["plan"] = plan
    columns["region"] = rng.choice(["north", "south"], size=rows).astype(np.str_)
    columns["churned"] = (rng.random(rows) < 1 / (1 + np.exp(-z))).astype(np.float64)
    columns["segment"] = np.where(z > 1, "high", np.where(z < -1, "low", "mid")).astype(np.str_)
    columns["spend"] = 2.0 * z + rng.normal(size=rows) * 0.1
    return Table(columns)


def without(table: Table, *names: str) -> Table:
    return Table({name: column for name, column in table.columns.items() if name not in names})
