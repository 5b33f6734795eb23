"""Benchmark: one drift window (100k reference x 100k current rows x 20 numeric features)
in driftloop against Evidently 0.7's DataDriftPreset, same data, same machine, same run.

    make bench-drift-window       (sets up bench/.venv-peers with Evidently first)
    .venv/bin/python bench/drift_window_vs_evidently.py [--rows N] [--no-clickhouse]

The data is tests/drift_streams (numpy, seeded): a reference table and a current table
in which x3 is shifted by 0.5 sigma. Both are saved as .npy for Evidently, which runs in
its own process (bench/peers/evidently_side.py): Report([DataDriftPreset()]).run on pandas
DataFrames, median of 3 runs. driftloop runs in this process, on a baseline frozen once
from the reference (decile edges and a 2,000-point sorted sample per feature, as at
registration):
  (a) the statistics only: bin_counts on the frozen edges, PSI and JS, 20 features;
  (b) the whole window report, build_report: PSI, JS, KL, exact KS against the reference
      sample, Benjamini-Hochberg across features, the drift decision;
  (c) unless --no-clickhouse: the current rows inserted as prediction events into
      embedded ClickHouse (chDB), then WindowReader.read (last 100k) + build_report;
  (d) the same window counted inside ClickHouse (WindowReader.statistics: one query,
      one row of counts back) + report_of_stats, as the drift service's rounds do;
      (c) and (d) alternate, and (d) must equal (b) exactly.
Cross-check: PSI, JS, KL and KS of driftloop against an independent computation (plain
numpy counts and smoothing, scipy's jensenshannon, ks_2samp, kstwobign); the largest
absolute difference must be below 1e-9. Prints the times, the ratios (goals: PSI+JS
>= 100x faster than Evidently, with KS >= 25x, the report through ClickHouse, (c) or
(d), >= 50x) and which features each tool flags.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from scipy import spatial, stats  # noqa: E402

from driftloop.clickhouse.backend import EmbeddedBackend  # noqa: E402
from driftloop.clickhouse.client import ClickHouse  # noqa: E402
from driftloop.clickhouse.prediction_log import PredictionLog  # noqa: E402
from driftloop.drift.report import Report, Thresholds, build_report, report_of_stats  # noqa: E402
from driftloop.drift.windows import Window, WindowData, WindowReader  # noqa: E402
from driftloop.models.baseline import Baseline, numeric_baseline  # noqa: E402
from driftloop.models.table import Table  # noqa: E402
from driftloop.stats import (  # noqa: E402
    EPS,
    bin_counts,
    js_distance,
    ks_p_value,
    ks_statistic,
    psi,
)
from tests import drift_streams  # noqa: E402

FloatArray = npt.NDArray[np.float64]
PEER_PYTHON = REPO / "bench" / ".venv-peers" / "bin" / "python"
NAMES = list(drift_streams.NAMES)
SHIFTED = "x3"
SHIFT = 0.5
START = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


def median_seconds(work: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def matrix(table: Table) -> FloatArray:
    return np.column_stack([np.asarray(table.columns[name], dtype=np.float64) for name in NAMES])


def freeze(reference: FloatArray) -> Baseline:
    """The baseline registration freezes: per feature, decile edges and a sorted sample."""
    rng = np.random.default_rng(5)
    return Baseline(
        numeric=[numeric_baseline(name, reference[:, j], rng) for j, name in enumerate(NAMES)]
    )


def window_data(current: FloatArray, scores: FloatArray) -> WindowData:
    rows = current.shape[0]
    empty = np.full(rows, "", dtype=object)
    return WindowData(
        start=START,
        end=START + dt.timedelta(hours=1),
        numbers={name: np.ascontiguousarray(current[:, j]) for j, name in enumerate(NAMES)},
        categories={},
        output_value=scores,
        output_label=np.where(scores >= 0.5, "1", "0").astype(object),
        labelled=np.zeros(rows, dtype=bool),
        truth_label=empty,
        truth_value=np.full(rows, np.nan),
        truth_is_label=np.zeros(rows, dtype=bool),
    )


def stats_only(baseline: Baseline, data: WindowData) -> list[tuple[float, float]]:
    """(a): PSI and JS of every feature on the frozen bins."""
    results = []
    for item in baseline.numeric:
        counts = bin_counts(data.numbers[item.feature], item.edges)
        reference = np.asarray(item.frequencies, dtype=np.float64)
        results.append((psi(reference, counts), js_distance(reference, counts)))
    return results


def report_of(baseline: Baseline, data: WindowData) -> Report:
    """(b): the window report as the drift service builds it."""
    return build_report("bench", "1", "last_n", "binary", baseline, data, Thresholds())


def cross_check(baseline: Baseline, data: WindowData, report: Report) -> dict[str, float]:
    """Largest |driftloop - independent| per statistic over the 20 features."""
    by_name = {r.stream: r for r in report.features}
    alone = dict(zip(NAMES, stats_only(baseline, data), strict=True))
    worst = {"PSI": 0.0, "JS": 0.0, "KL": 0.0, "KS D": 0.0, "KS p (raw)": 0.0}
    for item in baseline.numeric:
        x = data.numbers[item.feature]
        edges = np.asarray(item.edges)
        # Right-closed bins (-inf, e0], (e0, e1], ... counted by comparison, not searchsorted.
        at_or_below = (x[:, None] <= edges[None, :]).sum(axis=0)
        counts = np.diff(np.concatenate([[0], at_or_below, [x.size]]))
        k = counts.size
        p = (np.asarray(item.frequencies) + EPS) / (1 + EPS * k)
        q = (counts / x.size + EPS) / (1 + EPS * k)
        psi_ = float(np.sum((q - p) * np.log(q / p)))
        js_ = float(spatial.distance.jensenshannon(p, q, base=2))
        kl_ = float(np.sum(q * np.log(q / p)))
        sample = np.asarray(item.sample)
        d = float(stats.ks_2samp(sample, x, method="asymp").statistic)
        n, m = x.size, sample.size
        p_raw = float(stats.kstwobign.sf(math.sqrt(n * m / (n + m)) * d))
        ours = by_name[item.feature]
        diffs = {
            "PSI": max(abs(ours.psi - psi_), abs(alone[item.feature][0] - psi_)),
            "JS": max(abs(ours.js - js_), abs(alone[item.feature][1] - js_)),
            "KL": abs(ours.kl - kl_),
            "KS D": max(abs(ours.statistic - d), abs(ks_statistic(sample, x) - d)),
            "KS p (raw)": abs(ks_p_value(ours.statistic, n, m) - p_raw),
        }
        for key, value in diffs.items():
            worst[key] = max(worst[key], value)
    return worst


def run_evidently(work: Path, repeats: int) -> dict[str, Any]:
    done = subprocess.run(
        [str(PEER_PYTHON), str(REPO / "bench/peers/evidently_side.py"), str(work), str(repeats)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@dataclass(frozen=True)
class ThroughClickHouse:
    insert_s: float
    read_s: float  # (c) WindowReader.read
    total_s: float  # (c) read + build_report
    report: Report
    counted_s: float  # (d) WindowReader.statistics + report_of_stats
    counted_cpu_s: float
    read_cpu_s: float  # (c), process CPU (chDB's threads included)
    counted_report: Report


async def through_clickhouse(
    work: Path, current: Table, baseline: Baseline, repeats: int
) -> ThroughClickHouse:
    """(c): insert the current rows as prediction events, then read + report; (d) the
    window counted in ClickHouse + report_of_stats; alternating, medians."""
    trained = drift_streams.train()
    events = drift_streams.stream(trained, current, model="bench", version="1").predictions
    backend = EmbeddedBackend(work / "clickhouse")
    clickhouse = ClickHouse(backend, "bench")
    try:
        await clickhouse.apply_schema()
        log = PredictionLog(clickhouse)
        started = time.perf_counter()
        for first in range(0, len(events), 20_000):
            await log.write(predictions=events[first : first + 20_000])
        insert = time.perf_counter() - started
        reader = WindowReader(clickhouse)
        window = Window(last_n=current.rows)
        reads, totals, read_cpus, counted, counted_cpus = [], [], [], [], []
        report = counted_report = None
        for _ in range(repeats):
            started, cpu = time.perf_counter(), time.process_time()
            data = await reader.read("bench", "1", window, NAMES, [])
            read = time.perf_counter() - started
            report = report_of(baseline, data)
            reads.append(read)
            totals.append(time.perf_counter() - started)
            read_cpus.append(time.process_time() - cpu)
            started, cpu = time.perf_counter(), time.process_time()
            stats = await reader.statistics("bench", "1", window, baseline)
            counted_report = report_of_stats(
                "bench", "1", "last_n", "binary", baseline, stats, Thresholds()
            )
            counted.append(time.perf_counter() - started)
            counted_cpus.append(time.process_time() - cpu)
        assert report is not None and report.rows == current.rows
        assert counted_report is not None and counted_report.rows == current.rows
        return ThroughClickHouse(
            insert_s=insert,
            read_s=statistics.median(reads),
            total_s=statistics.median(totals),
            report=report,
            counted_s=statistics.median(counted),
            counted_cpu_s=statistics.median(counted_cpus),
            read_cpu_s=statistics.median(read_cpus),
            counted_report=counted_report,
        )
    finally:
        await clickhouse.close()


def flagged(report: Report) -> list[str]:
    return sorted(f.stream for f in report.features if f.drifted)


def main(args: argparse.Namespace) -> int:
    if not PEER_PYTHON.exists():
        print("run `make bench-drift-window` (it installs Evidently in bench/.venv-peers)")
        return 2
    with tempfile.TemporaryDirectory(prefix="driftloop-bench-window-") as folder:
        return run(args, Path(folder))


def run(args: argparse.Namespace, work: Path) -> int:
    rows = args.rows
    reference_table = drift_streams.table(rows, seed=101)
    current_table = drift_streams.table(rows, seed=202, shift={SHIFTED: SHIFT})
    reference, current = matrix(reference_table), matrix(current_table)
    np.save(work / "reference.npy", reference)
    np.save(work / "current.npy", current)
    (work / "names.json").write_text(json.dumps(NAMES))
    print(
        f"{rows:,} reference x {rows:,} current rows x {len(NAMES)} numeric features, "
        f"{SHIFTED} shifted by {SHIFT} sigma",
        flush=True,
    )

    print(f"[1/3] Evidently DataDriftPreset, {args.repeats} runs (peer venv)", flush=True)
    peer = run_evidently(work, args.repeats)
    evidently_s = statistics.median(peer["times"])

    print(f"[2/3] driftloop in-process, {args.ours_repeats} runs each", flush=True)
    started = time.perf_counter()
    baseline = freeze(reference)
    freeze_s = time.perf_counter() - started
    scores = drift_streams.train().model.predict_table(current_table)
    data = window_data(current, scores)
    stats_s = median_seconds(lambda: stats_only(baseline, data), args.ours_repeats)
    report_s = median_seconds(lambda: report_of(baseline, data), args.ours_repeats)
    report = report_of(baseline, data)
    worst = cross_check(baseline, data, report)

    clickhouse: ThroughClickHouse | None = None
    if args.clickhouse:
        print("[3/3] driftloop through embedded ClickHouse (insert, then read + report)")
        clickhouse = asyncio.run(through_clickhouse(work, current_table, baseline, args.repeats))

    def line(name: str, seconds: float, goal: str = "", ratio: bool = True) -> None:
        times = f"{evidently_s / seconds:9.0f}x" if ratio else f"{'':>10}"
        print(f"  {name:<50} {seconds * 1000:11.1f} {times}  {goal}")

    print()
    print(f"  {'median of runs':<50} {'ms':>11} {'Evidently/':>10}")
    line(f"Evidently {peer['evidently']} DataDriftPreset", evidently_s, ratio=False)
    runs = ", ".join(f"{t:.2f}" for t in peer["times"])
    cpu = ", ".join(f"{t:.2f}" for t in peer["cpu"])
    print(f"  {'   its runs: wall s ' + runs + '; cpu s ' + cpu:<50}")
    line("driftloop (a) PSI+JS on frozen bins", stats_s, "goal >= 100x")
    line("driftloop (b) build_report: PSI/JS/KL + KS + BH", report_s, "goal >= 25x")
    if clickhouse is not None:
        line(
            "driftloop (c) ClickHouse read + build_report",
            clickhouse.total_s,
            "goal >= 50x (the service's path, embedded)",
        )
        print(f"  {'   of which WindowReader.read':<50} {clickhouse.read_s * 1000:11.1f}")
        print(
            f"  {'   process CPU (chDB threads included)':<50} {clickhouse.read_cpu_s * 1000:11.1f}"
        )
        line(
            "driftloop (d) counted in ClickHouse + report",
            clickhouse.counted_s,
            "goal >= 50x (the service's path, server)",
        )
        print(
            f"  {'   process CPU (chDB threads included)':<50} "
            f"{clickhouse.counted_cpu_s * 1000:11.1f}"
        )
        faster = clickhouse.total_s / clickhouse.counted_s
        print(f"  {'   (c) / (d), same run, alternating':<50} {faster:10.2f}x")
    print(f"  {'one-time: freeze the baseline from the reference':<50} {freeze_s * 1000:11.1f}")
    if clickhouse is not None:
        rate = rows / clickhouse.insert_s
        print(
            f"  {'one-time: insert the window (PredictionLog.write)':<50} "
            f"{clickhouse.insert_s:10.1f}s  ({rate:,.0f} rows/s)"
        )

    print("\n  cross-check, max |driftloop - independent| over 20 features (must be < 1e-9):")
    for key, value in worst.items():
        print(f"    {key:<11} {value:.2e}")
    exact = True
    if clickhouse is not None:
        for name, other in (("(c)", clickhouse.report), ("(d)", clickhouse.counted_report)):
            same = max(
                max(
                    abs(a.psi - b.psi),
                    abs(a.js - b.js),
                    abs(a.kl - b.kl),
                    abs(a.statistic - b.statistic),
                    abs(a.p_value - b.p_value),
                )
                for a, b in zip(report.features, other.features, strict=True)
            )
            exact = exact and same == 0.0
            print(f"    {name} vs (b)  {same:.2e}  (must be 0: the same window in ClickHouse)")

    ours = flagged(report)
    theirs = sorted(name for name, column in peer["columns"].items() if column["drifted"])
    methods = sorted({column["method"] for column in peer["columns"].values()})
    print("\n  flagged features (only the shifted one should be):")
    print(f"    driftloop (KS vs negligible after BH at 0.01; PSI >= 0.1 or D >= 0.08): {ours}")
    print(f"    Evidently ({', '.join(methods)}): {theirs}")
    if clickhouse is not None:
        print(f"    driftloop (c): {flagged(clickhouse.report)}")
        print(f"    driftloop (d): {flagged(clickhouse.counted_report)}")
    shifted = next(r for r in report.features if r.stream == SHIFTED)
    others = [r for r in report.features if r.stream != SHIFTED]
    print(
        f"    driftloop {SHIFTED}: PSI {shifted.psi:.3f} JS {shifted.js:.3f} "
        f"KS {shifted.statistic:.3f}; largest PSI elsewhere {max(r.psi for r in others):.4f}"
    )
    print(
        f"    Evidently {SHIFTED}: score {peer['columns'][SHIFTED]['score']:.3f}; largest "
        "elsewhere "
        f"{max(c['score'] for n, c in peer['columns'].items() if n != SHIFTED):.4f} "
        f"(threshold {peer['columns'][SHIFTED]['threshold']})"
    )
    print(
        f"\n  versions: evidently {peer['evidently']}, pandas {peer['pandas']} (peer venv); "
        f"numpy {np.__version__} (driftloop)"
    )
    correct = max(worst.values()) < 1e-9 and exact and ours == [SHIFTED]
    goals = (
        evidently_s / stats_s >= 100
        and evidently_s / report_s >= 25
        and (
            clickhouse is None or evidently_s / min(clickhouse.total_s, clickhouse.counted_s) >= 50
        )
    )
    print(f"  numbers exact and the shifted feature alone flagged: {correct}")
    print(f"  goals met: {goals}")
    return 0 if correct else 1  # a goal missed is a figure, a wrong number a failure


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3, help="Evidently and ClickHouse runs")
    parser.add_argument("--ours-repeats", type=int, default=15, help="in-process driftloop runs")
    parser.add_argument("--no-clickhouse", dest="clickhouse", action="store_false")
    sys.exit(main(parser.parse_args()))
