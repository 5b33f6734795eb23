"""The Evidently side of bench/drift_window_vs_evidently.py. Runs in the peer environment
(bench/.venv-peers: Evidently 0.7, pandas<3), never in driftloop's.

    WORK REPEATS   read WORK/reference.npy, WORK/current.npy and WORK/names.json, time
                   Report([DataDriftPreset()]).run(current, reference) REPEATS times on
                   pandas DataFrames (after a small untimed warm-up run, so that lazy
                   imports are not counted), and print one JSON line: the versions, the
                   wall and CPU seconds of each run, and each column's drift method,
                   score, threshold and decision.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np


def main(work: Path, repeats: int) -> None:
    import evidently
    import pandas as pd
    from evidently import Report
    from evidently.presets import DataDriftPreset

    names = json.loads((work / "names.json").read_text())
    reference = pd.DataFrame(np.load(work / "reference.npy"), columns=names)
    current = pd.DataFrame(np.load(work / "current.npy"), columns=names)
    Report([DataDriftPreset()]).run(current.head(1000), reference.head(1000))
    times, cpu = [], []
    snapshot = None
    for _ in range(repeats):
        started, started_cpu = time.perf_counter(), time.process_time()
        snapshot = Report([DataDriftPreset()]).run(current, reference)
        times.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    assert snapshot is not None
    columns = {}
    drifted_count = None
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        kind = config["type"].rsplit(":", 1)[-1]
        if kind == "ValueDrift":
            method, threshold, score = config["method"], config["threshold"], metric["value"]
            # p-value tests drift below the threshold, distances at or above it.
            drifted = score < threshold if "p_value" in method else score >= threshold
            columns[config["column"]] = {
                "method": method,
                "score": score,
                "threshold": threshold,
                "drifted": bool(drifted),
            }
        elif kind == "DriftedColumnsCount":
            drifted_count = metric["value"]["count"]
    print(
        json.dumps(
            {
                "evidently": evidently.__version__,
                "pandas": pd.__version__,
                "times": times,
                "cpu": cpu,
                "columns": columns,
                "drifted_count": drifted_count,
            }
        )
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
