"""The scikit-learn side of bench/training_vs_sklearn.py. Runs in the peer environment
(bench/.venv-peers: scikit-learn, pandas, pyarrow), never in driftloop's.

    DATAFILE [--c C] [--check-c C2] [--repeats N | --stdin]
        read DATAFILE (Parquet: feature columns, `y` in {0, 1}, `holdout` in {0, 1}) and,
        for each solver ("lbfgs", and "newton-cholesky" when this scikit-learn has it), after
        a small untimed warm-up fit (so that lazy imports are not counted), time rounds:
        Pipeline([StandardScaler(), LogisticRegression(C=C, l1_ratio=0)]).fit on the
        training rows, then the holdout metrics (predict_proba, accuracy, log loss, ROC AUC,
        Brier). N rounds back to back, or with --stdin one round per input line (each
        answered with a JSON line of its times), so that the caller can interleave its own
        runs with these. Then one untimed fit per solver at C2 (the regularisation
        cross-check) and a last JSON line: versions, BLAS threads, and per solver the wall
        and CPU seconds of each run, n_iter_, convergence warnings, the holdout metrics,
        and the coefficients on the standardised features.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np


def make(solver: str, c: float) -> Any:
    import sklearn
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    # l1_ratio=0 is a pure L2 penalty; it replaces penalty="l2" from scikit-learn 1.8 on.
    major, minor = (int(part) for part in sklearn.__version__.split(".")[:2])
    penalty: dict[str, Any] = {"l1_ratio": 0.0} if (major, minor) >= (1, 8) else {"penalty": "l2"}
    return Pipeline(
        [
            ("scale", StandardScaler()),
            ("model", LogisticRegression(C=c, solver=solver, max_iter=1000, **penalty)),
        ]
    )


def metrics(pipeline: Any, x: Any, y: Any) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, brier_score_loss, log_loss, roc_auc_score

    p = pipeline.predict_proba(x)
    return {
        "accuracy": float(accuracy_score(y, p.argmax(axis=1))),
        "log_loss": float(log_loss(y, p)),
        "auc": float(roc_auc_score(y, p[:, 1])),
        "brier": float(brier_score_loss(y, p[:, 1])),
    }


def fit(pipeline: Any, x: Any, y: Any) -> tuple[Any, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipeline.fit(x, y)
    return pipeline, [str(w.message).splitlines()[0] for w in caught]


def main(args: argparse.Namespace) -> None:
    import pandas as pd
    import scipy
    import sklearn
    from threadpoolctl import threadpool_info

    try:
        frame = pd.read_parquet(args.datafile)
    except ImportError as error:  # pandas reads Parquet through pyarrow
        sys.exit(f"bench/.venv-peers needs pyarrow to read {args.datafile.name}: {error}")
    names = [name for name in frame.columns if name not in ("y", "holdout")]
    held = frame["holdout"].to_numpy() == 1
    x = frame[names].to_numpy(dtype=np.float64)
    y = frame["y"].to_numpy().astype(np.int64)
    x_train, y_train = np.ascontiguousarray(x[~held]), y[~held]
    x_hold, y_hold = np.ascontiguousarray(x[held]), y[held]

    solvers = ["lbfgs"]
    try:
        make("newton-cholesky", args.c).fit(x_train[:2000], y_train[:2000])
        solvers.append("newton-cholesky")
    except ValueError:
        pass

    times: dict[str, dict[str, list[float]]] = {
        solver: {"fit": [], "fit_cpu": [], "metrics_time": [], "metrics_cpu": []}
        for solver in solvers
    }
    messages: dict[str, list[str]] = {solver: [] for solver in solvers}
    pipelines: dict[str, Any] = {}
    scores: dict[str, dict[str, float]] = {}
    for solver in solvers:
        make(solver, args.c).fit(x_train[:2000], y_train[:2000])  # warm-up, untimed
    print(json.dumps({"ready": solvers}), flush=True)
    rounds = sys.stdin if args.stdin else range(args.repeats)
    for _ in rounds:
        this_round: dict[str, dict[str, float]] = {}
        for solver in solvers:
            started, started_cpu = time.perf_counter(), time.process_time()
            pipelines[solver], caught = fit(make(solver, args.c), x_train, y_train)
            fitted, fitted_cpu = time.perf_counter(), time.process_time()
            scores[solver] = metrics(pipelines[solver], x_hold, y_hold)
            this_round[solver] = {
                "fit": fitted - started,
                "fit_cpu": fitted_cpu - started_cpu,
                "metrics_time": time.perf_counter() - fitted,
                "metrics_cpu": time.process_time() - fitted_cpu,
            }
            for key, value in this_round[solver].items():
                times[solver][key].append(value)
            messages[solver].extend(caught)
        print(json.dumps(this_round), flush=True)

    results: dict[str, Any] = {}
    for solver in solvers:
        model = pipelines[solver].named_steps["model"]
        check, check_caught = fit(make(solver, args.check_c), x_train, y_train)
        check_model = check.named_steps["model"]
        results[solver] = {
            **times[solver],
            "n_iter": int(model.n_iter_[0]),
            "warnings": sorted(set(messages[solver])),
            "metrics": scores[solver],
            "coef": model.coef_[0].tolist(),
            "intercept": float(model.intercept_[0]),
            "check_coef": check_model.coef_[0].tolist(),
            "check_intercept": float(check_model.intercept_[0]),
            "check_n_iter": int(check_model.n_iter_[0]),
            "check_warnings": sorted(set(check_caught)),
        }
    blas = [
        f"{info.get('internal_api')} {info.get('version')} x{info.get('num_threads')}"
        for info in threadpool_info()
    ]
    print(
        json.dumps(
            {
                "sklearn": sklearn.__version__,
                "numpy": np.__version__,
                "scipy": scipy.__version__,
                "threads": blas,
                "train_rows": int(x_train.shape[0]),
                "holdout_rows": int(x_hold.shape[0]),
                "features": names,
                "solvers": results,
            }
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("datafile", type=Path)
    parser.add_argument("--c", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--check-c", type=float, default=1e-3)
    parser.add_argument("--stdin", action="store_true", help="one round per input line")
    main(parser.parse_args())
