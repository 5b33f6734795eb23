"""Benchmark: training driftloop's linear flavor (binary logistic regression) against
scikit-learn's LogisticRegression, same data, same regularisation, same machine, same run.

    make bench-training           (sets up bench/.venv-peers with scikit-learn first)
    .venv/bin/python bench/training_vs_sklearn.py [--rows N] [--repeats R] [--l2 L2]

Data (numpy, seeded): 100,000 rows x 20 numeric features, correlated (rho^|i-j|, rho 0.5)
and then given very different means and scales (so that standardising matters); a binary
target drawn from a logistic model on 15 of them; a seeded 80/20 split. Everything is
written to one Parquet file in a temporary folder (feature columns, `y`, `holdout`), which
both sides read.

Same model on both sides. driftloop's `fit_logistic` minimises
    (1/n) * [ sum_i logloss_i + (l2/2) * |w|^2 ]
(gradient X'(p - y)/n + l2*w/n; the intercept carries a 1e-8 penalty, i.e. none), on
features standardised by the training mean and (population) standard deviation.
scikit-learn's LogisticRegression minimises
    C * sum_i logloss_i + (1/2) * |w|^2     (lbfgs, newton-cholesky: intercept unpenalised)
which is the same problem scaled by 1/C when C = 1/l2. So TrainingSpec(l2=L) is compared
with Pipeline([StandardScaler(), LogisticRegression(C=1/L, l1_ratio=0)]) (a pure L2
penalty; `penalty="l2"` on scikit-learn before 1.8). StandardScaler also divides by the
population standard deviation, so the coefficients on the standardised features are
directly comparable, and they are compared, besides the holdout metrics.

scikit-learn runs in its own process, in the peer environment (bench/peers/sklearn_side.py
--stdin, bench/.venv-peers), with solver="lbfgs" (its default) and "newton-cholesky" (a
Newton method like driftloop's), max_iter=1000, default tol (1e-4). driftloop runs in this
process. After one untimed warm-up on each side, --repeats rounds (default 5) alternate the
two sides, so that load from elsewhere on the machine falls on both; each round times:
  sklearn fit              Pipeline.fit (StandardScaler + LogisticRegression), each solver
  sklearn fit + metrics    the above, then predict_proba on the holdout and accuracy_score,
                           log_loss, roc_auc_score, brier_score_loss
  driftloop fit            infer_schema + Preprocessing.fit + matrix + fit_logistic (the
                           pieces of train_linear that Pipeline.fit corresponds to)
  driftloop fit + metrics  the above, then the LinearModel's holdout scores and
                           classification_metrics (accuracy, log loss, AUC, Brier)
  driftloop train_linear   the whole call with the same holdout: also the label encoding,
                           the artifact (canonical JSON) round trip, the drift baseline and
                           the data hash, which scikit-learn has no counterpart for
Printed: the median (and min) wall time and median CPU time of each, and the ratios
driftloop time / scikit-learn time (below 1: driftloop is faster), by median and by min.
The pieces timed as "driftloop fit (+ metrics)" are checked to give exactly what
train_linear gives (weights and metrics within 1e-9).

Agreement (exit status 1 without it): |holdout accuracy difference| <= 0.001 (20 of 20,000
rows) and |log loss difference| <= 1e-4 against both solvers; and a regularisation
cross-check: one more fit on each side at a strong penalty (--check-l2, default 1000, so
C = 0.001) where the coefficients move visibly (up to about 0.26 here); there the largest
coefficient difference to newton-cholesky must be below a tenth of that move. The run also
prints the difference driftloop would show with l2 halved or doubled, i.e. what a mapping
off by a factor of 2 would look like (it fails the check; C = l2 or a factor of n, far more).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from driftloop.models.linear import LinearModel, Preprocessing, fit_logistic
from driftloop.models.metrics import classification_metrics
from driftloop.models.table import Table, read_table
from driftloop.models.training import TrainingSpec, infer_schema, train_linear

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
T = TypeVar("T")

REPO = Path(__file__).resolve().parent.parent
PEER_PYTHON = REPO / "bench" / ".venv-peers" / "bin" / "python"
PEER_SCRIPT = REPO / "bench" / "peers" / "sklearn_side.py"
TARGET = "y"
SPLIT = "holdout"
HOLDOUT_FRACTION = 0.2
MAX_ACCURACY_DIFF = 1e-3
MAX_LOG_LOSS_DIFF = 1e-4


def generate(rows: int, features: int, seed: int) -> dict[str, FloatArray]:
    """Seeded columns: features x00.., the 0/1 target `y`, and `holdout` (1 for 20%)."""
    rng = np.random.default_rng(seed)
    index = np.arange(features)
    correlation = 0.5 ** np.abs(index[:, None] - index[None, :])
    z = rng.standard_normal((rows, features)) @ np.linalg.cholesky(correlation).T
    coefficients = rng.normal(0.0, 0.6, features)
    coefficients[rng.permutation(features)[: features // 4]] = 0.0
    logit = z @ coefficients - 0.4
    y = (rng.random(rows) < 1.0 / (1.0 + np.exp(-logit))).astype(np.float64)
    means = rng.uniform(-50.0, 50.0, features)
    scales = 10.0 ** rng.uniform(-1.0, 2.0, features)
    x = means + scales * z
    holdout = np.zeros(rows)
    holdout[rng.permutation(rows)[: round(rows * HOLDOUT_FRACTION)]] = 1.0
    columns = {f"x{j:02d}": np.ascontiguousarray(x[:, j]) for j in range(features)}
    return {**columns, TARGET: y, SPLIT: holdout}


def write_parquet(columns: dict[str, FloatArray], path: Path) -> None:
    pq.write_table(pa.table({name: pa.array(values) for name, values in columns.items()}), path)


def split(path: Path) -> tuple[Table, Table, tuple[str, ...]]:
    """The training and holdout tables as driftloop reads the file (read_table)."""
    table = read_table(path)
    held = table.columns[SPLIT] == 1.0
    names = tuple(name for name in table.columns if name not in (TARGET, SPLIT))
    kept = Table({name: table.columns[name] for name in (*names, TARGET)})
    train = kept.take(np.flatnonzero(~held).astype(np.int64))
    holdout = kept.take(np.flatnonzero(held).astype(np.int64))
    return train, holdout, names


def labels(table: Table) -> IntArray:
    result: IntArray = (table.columns[TARGET] == 1.0).astype(np.int64)
    return result


def fit(train: Table, spec: TrainingSpec) -> LinearModel:
    """What train_linear does to fit: schema, standardisation, design matrix, Newton."""
    assert spec.features is not None
    schema = infer_schema(train, spec.features)
    preprocessing = Preprocessing.fit(train, schema)
    weights, intercepts = fit_logistic(preprocessing.matrix(train), labels(train), 2, spec.l2)
    return LinearModel(schema, "binary", preprocessing, weights, intercepts, ("0", "1"))


def holdout_metrics(model: LinearModel, holdout: Table) -> dict[str, float]:
    """What train_linear does to evaluate: scores on the holdout, classification_metrics."""
    scores = model.predict_table(holdout)
    return classification_metrics(labels(holdout), np.column_stack([1.0 - scores, scores]))


def timed(work: Callable[[], T]) -> tuple[T, float, float]:
    started, started_cpu = time.perf_counter(), time.process_time()
    result = work()
    return result, time.perf_counter() - started, time.process_time() - started_cpu


class Sklearn:
    """The scikit-learn side (bench/peers/sklearn_side.py --stdin) in the peer venv, one
    round of timed runs per request, so that its runs interleave with driftloop's."""

    def __init__(self, datafile: Path, c: float, check_c: float, log: Path) -> None:
        command = [str(PEER_PYTHON), str(PEER_SCRIPT), str(datafile), "--stdin"]
        command += ["--c", repr(c), "--check-c", repr(check_c)]
        self.log = log
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log.open("wb"),
            text=True,
        )
        self.solvers: list[str] = self._read()["ready"]

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            self.process.wait()
            raise RuntimeError(f"the scikit-learn side failed:\n{self.log.read_text()}")
        result: dict[str, Any] = json.loads(line)
        return result

    def round(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("run\n")
        self.process.stdin.flush()
        self._read()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def finish(self) -> dict[str, Any]:
        """Close the rounds; the last line has every run's times, metrics, coefficients."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        result = self._read()
        if self.process.wait() != 0:
            raise RuntimeError(f"the scikit-learn side failed:\n{self.log.read_text()}")
        return result


def main(args: argparse.Namespace) -> int:
    if not PEER_PYTHON.exists():
        print("run `make bench-training` (it installs scikit-learn in bench/.venv-peers)")
        return 2
    with tempfile.TemporaryDirectory(prefix="driftloop-bench-training-") as folder:
        return run(args, Path(folder))


def run(args: argparse.Namespace, work: Path) -> int:
    datafile = work / "data.parquet"
    write_parquet(generate(args.rows, args.features, args.seed), datafile)
    train, holdout, names = split(datafile)
    c, check_c = 1.0 / args.l2, 1.0 / args.check_l2
    print(
        f"{args.rows:,} rows x {len(names)} numeric features, binary target: "
        f"{train.rows:,} training, {holdout.rows:,} holdout rows; "
        f"l2 = {args.l2:g} (driftloop) = C {c:g} (scikit-learn)",
        flush=True,
    )

    print("warming up: scikit-learn (peer venv, both solvers), driftloop (this process)")
    peer_side = Sklearn(datafile, c, check_c, work / "sklearn.log")
    try:
        return compare(args, peer_side, train, holdout, names)
    finally:
        peer_side.close()


def compare(
    args: argparse.Namespace,
    peer_side: Sklearn,
    train: Table,
    holdout: Table,
    names: tuple[str, ...],
) -> int:
    spec = TrainingSpec(target=TARGET, task="binary", l2=args.l2, features=names)
    model = fit(train, spec)  # warm-up, untimed
    ours = holdout_metrics(model, holdout)
    trained = train_linear(train, spec, holdout=holdout)
    load = [os.getloadavg()[0]]
    print(
        f"{args.repeats} rounds, each: sklearn {' + '.join(peer_side.solvers)}, driftloop fit + "
        "metrics, driftloop train_linear",
        flush=True,
    )
    fit_s, fit_cpu, total_s, total_cpu, whole_s, whole_cpu = [], [], [], [], [], []
    for _ in range(args.repeats):
        peer_side.round()
        model, seconds, cpu = timed(partial(fit, train, spec))
        ours, metric_s, metric_cpu = timed(partial(holdout_metrics, model, holdout))
        fit_s.append(seconds)
        fit_cpu.append(cpu)
        total_s.append(seconds + metric_s)
        total_cpu.append(cpu + metric_cpu)
        trained, seconds, cpu = timed(partial(train_linear, train, spec, holdout=holdout))
        whole_s.append(seconds)
        whole_cpu.append(cpu)
    load.append(os.getloadavg()[0])
    peer = peer_side.finish()
    assert peer["features"] == list(names) and peer["train_rows"] == train.rows
    # The pieces timed above are what train_linear does: same weights, same metrics.
    same_weights = float(np.max(np.abs(trained.model.weights - model.weights)))
    same_metrics = max(abs(trained.metrics[key] - ours[key]) for key in ours)
    assert same_weights < 1e-9 and same_metrics < 1e-9, (same_weights, same_metrics)
    check_spec = TrainingSpec(target=TARGET, task="binary", l2=args.check_l2, features=names)
    check_model = fit(train, check_spec)

    weights = model.weights[0]
    check_weights = check_model.weights[0]
    solvers: dict[str, dict[str, Any]] = peer["solvers"]
    med = statistics.median

    print()
    print(
        f"  {str(args.repeats) + ' runs, ms':<46} {'median wall':>11} {'median cpu':>11} "
        f"{'min wall':>9}"
    )

    def line(name: str, wall: list[float], cpu: list[float]) -> None:
        print(
            f"  {name:<46} {med(wall) * 1000:11.1f} {med(cpu) * 1000:11.1f} {min(wall) * 1000:9.1f}"
        )

    line("driftloop fit (standardise + Newton)", fit_s, fit_cpu)
    line("driftloop fit + holdout metrics", total_s, total_cpu)
    line("driftloop train_linear (all of it)", whole_s, whole_cpu)
    for solver, result in solvers.items():
        fits, metric_times = result["fit"], result["metrics_time"]
        sums = [a + b for a, b in zip(fits, metric_times, strict=True)]
        cpu_sums = [a + b for a, b in zip(result["fit_cpu"], result["metrics_cpu"], strict=True)]
        line(f"sklearn {solver} fit ({result['n_iter']} iterations)", fits, result["fit_cpu"])
        line(f"sklearn {solver} fit + holdout metrics", sums, cpu_sums)
        result["fit+metrics"] = sums
    print(f"  (1-minute load average {load[0]:.2f} before the rounds, {load[1]:.2f} after)")
    print(f"\n  runs, wall ms: driftloop fit {', '.join(f'{t * 1000:.0f}' for t in fit_s)}")
    print(
        f"                 driftloop train_linear {', '.join(f'{t * 1000:.0f}' for t in whole_s)}"
    )
    for solver, result in solvers.items():
        runs = ", ".join(f"{t * 1000:.0f}" for t in result["fit"])
        print(f"                 sklearn {solver} fit {runs}")
    print("  (rounds alternate the two sides; the machine's other load varies between them)")

    print("\n  ratio driftloop / sklearn wall time (below 1: driftloop faster)")
    header = "".join(f"{solver:>17}" for solver in solvers)
    print(f"  {'':<46}{header}")
    rows = [
        ("fit", fit_s, "fit"),
        ("fit + holdout metrics", total_s, "fit+metrics"),
        ("train_linear vs sklearn fit + metrics", whole_s, "fit+metrics"),
    ]
    for summary, how in ((med, "median"), (min, "min")):
        for name, mine, key in rows:
            cells = "".join(
                f"{summary(mine) / summary(result[key]):16.2f}x" for result in solvers.values()
            )
            print(f"  {name + ', ' + how:<46}{cells}")

    print(f"\n  holdout metrics ({holdout.rows:,} rows), coefficients on standardised features")
    print(
        f"  {'':<26} {'accuracy':>9} {'log loss':>10} {'AUC':>8} {'Brier':>8} "
        f"{'max|dw| vs driftloop':>21}"
    )

    def metric_line(name: str, metrics: dict[str, float], dw: str) -> None:
        print(
            f"  {name:<26} {metrics['accuracy']:9.5f} {metrics['log_loss']:10.6f} "
            f"{metrics['auc']:8.5f} {metrics['brier']:8.5f} {dw:>21}"
        )

    metric_line("driftloop", ours, "")
    diffs: dict[str, tuple[float, float, float, float]] = {}
    for solver, result in solvers.items():
        dw = float(np.max(np.abs(np.asarray(result["coef"]) - weights)))
        check_dw = float(np.max(np.abs(np.asarray(result["check_coef"]) - check_weights)))
        theirs = result["metrics"]
        diffs[solver] = (
            theirs["accuracy"] - ours["accuracy"],
            theirs["log_loss"] - ours["log_loss"],
            dw,
            check_dw,
        )
        metric_line(f"sklearn {solver}", theirs, f"{dw:.2e}")

    moved = float(np.max(np.abs(check_weights - weights)))
    print(
        f"\n  regularisation cross-check at l2 = {args.check_l2:g} (C = {1 / args.check_l2:g}): "
        f"the penalty moves driftloop's coefficients by up to {moved:.3f} from l2 = {args.l2:g}"
    )
    # What a mapping off by a factor of 2 would look like (e.g. l2 * |w|^2 for l2/2 * |w|^2).
    off = {
        factor: fit(train, replace(check_spec, l2=args.check_l2 * factor)).weights[0]
        for factor in (0.5, 2.0)
    }
    for solver, (_, _, _, check_dw) in diffs.items():
        iters = solvers[solver]["check_n_iter"]
        theirs = np.asarray(solvers[solver]["check_coef"])
        halved, doubled = (float(np.max(np.abs(theirs - off[f]))) for f in (0.5, 2.0))
        print(
            f"    max|dw| vs sklearn {solver}: {check_dw:.2e} ({iters} iterations); "
            f"with l2 halved {halved:.2e}, doubled {doubled:.2e}"
        )
    for solver, result in solvers.items():
        for message in result["warnings"] + result["check_warnings"]:
            print(f"    warning from sklearn {solver}: {message}")

    print("\n  differences sklearn - driftloop (limits: accuracy 1e-3, log loss 1e-4):")
    ok = True
    for solver, (accuracy, log_loss, _, _) in diffs.items():
        fine = abs(accuracy) <= MAX_ACCURACY_DIFF and abs(log_loss) <= MAX_LOG_LOSS_DIFF
        ok = ok and fine
        print(
            f"    {solver:<16} accuracy {accuracy:+.2e}  log loss {log_loss:+.2e}  "
            f"{'within limits' if fine else 'OUTSIDE THE LIMITS'}"
        )
    reference = "newton-cholesky" if "newton-cholesky" in diffs else "lbfgs"
    mapped = diffs[reference][3] < 0.1 * moved
    ok = ok and mapped
    print(
        f"    same regularisation (C = 1/l2): {mapped} "
        f"({reference}: {diffs[reference][3]:.1e} < {0.1 * moved:.1e})"
    )
    print(
        f"\n  versions: scikit-learn {peer['sklearn']}, numpy {peer['numpy']}, scipy "
        f"{peer['scipy']} (peer venv; BLAS {'; '.join(peer['threads']) or '?'}); "
        f"numpy {np.__version__} (driftloop); {os.cpu_count()} CPUs"
    )
    print(f"  agreement: {ok}")
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--l2", type=float, default=1.0, help="TrainingSpec.l2 (C = 1/l2)")
    parser.add_argument("--check-l2", type=float, default=1000.0)
    parser.add_argument("--seed", type=int, default=20261127)
    sys.exit(main(parser.parse_args()))
