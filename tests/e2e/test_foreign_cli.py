"""Registering models trained elsewhere from the CLI, served by the inference service as
its own process: skops and MLflow artifacts with reference data; a pickle refused
in one line naming the flag; a version without reference data told it has no baseline,
at registration and in its drift report."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests import foreign_models as fm
from tests.e2e.test_registry_cli import cli
from tests.e2e.test_registry_cli import services as services  # the fixture

ROW = {f"x{i}": 0.2 * i for i in range(6)} | {"plan": "pro", "region": "south"}


async def predicted(env: dict[str, str], model: str) -> float:
    deadline = time.monotonic() + 30
    while True:  # the inference service resolves the champion alias from the registry
        code, out = await cli(
            env,
            "predict",
            "--direct",
            "--model",
            model,
            "--version",
            "champion",
            "--row",
            json.dumps(ROW),
        )
        if code == 0 or time.monotonic() > deadline:
            break
    assert code == 0, out
    return float(json.loads(out)["output"]["value"])


@pytest.mark.timeout(300)  # each CLI run imports scikit-learn afresh
async def test_register_foreign_models_from_the_cli(
    services: dict[str, str], tmp_path: Path
) -> None:
    import pandas as pd

    table = fm.data(1500)
    reference, holdout = table.take(np.arange(1000)), table.take(np.arange(1000, 1500))
    fitted: Any = fm.pipeline(reference)
    expected = float(fitted.predict_proba(pd.DataFrame([ROW]))[0, 1])
    ref = str(fm.write_parquet(reference, tmp_path / "reference.parquet"))
    hold = str(fm.write_parquet(holdout, tmp_path / "holdout.parquet"))
    skops = fm.save_skops(fitted, tmp_path / "churn.skops")
    mlflow = fm.save_mlflow_sklearn(fitted, tmp_path / "mlflow", reference, "skops")
    for name, path, flavor in (("sk", skops, ["--flavor", "sklearn"]), ("mlflow", mlflow, [])):
        code, out = await cli(
            services,
            "models",
            "register",
            "--model",
            f"churn-{name}",
            "--artifact",
            str(path),
            *flavor,
            "--reference-data",
            ref,
            "--holdout",
            hold,
            "--target",
            fm.TARGET,
            "--alias",
            "champion",
        )
        assert code == 0, out
        assert f"registered churn-{name} version 1 (sklearn" in out and "auc=" in out, out
    assert await predicted(services, "churn-sk") == pytest.approx(expected, abs=1e-9)

    pickle = fm.save_joblib(fitted, tmp_path / "churn.joblib")
    code, out = await cli(
        services,
        "models",
        "register",
        "--model",
        "churn-pickle",
        "--artifact",
        str(pickle),
        "--flavor",
        "sklearn",
        "--reference-data",
        ref,
        "--target",
        fm.TARGET,
    )
    assert code == 2 and "--trust-pickle" in out and "Traceback" not in out, out
    # The progress line, then one line: the error, naming the flag.
    assert out.strip().splitlines()[-1].startswith("driftloop: trust_pickle: "), out
    assert len(out.strip().splitlines()) == 2, out

    schema = tmp_path / "schema.json"
    kinds: dict[str, object] = {n: "number" for n in fm.NUMBERS}
    kinds["x2"] = {"kind": "number", "allow_nan": True}
    schema.write_text(json.dumps(kinds | {n: "category" for n in fm.CATEGORIES}))
    code, out = await cli(
        services,
        "models",
        "register",
        "--model",
        "churn-bare",
        "--artifact",
        str(skops),
        "--flavor",
        "sklearn",
        "--schema",
        str(schema),
        "--alias",
        "champion",
    )
    assert code == 0 and "no drift baseline" in out, out
    assert await predicted(services, "churn-bare") == pytest.approx(expected, abs=1e-9)
    code, out = await cli(
        services, "drift", "report", "--model", "churn-bare", "--version", "1", "--last", "10"
    )
    assert code == 0 and "no drift baseline" in out, out
