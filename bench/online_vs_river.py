"""Benchmark: driftloop's online detector (CusumBank, two-sided CUSUM) against river 0.26's
ADWIN(delta=0.002) and PageHinkley() (defaults): cost per update, detection delay, false
alarms. Same seeded data for every detector, same machine, same run.

    make bench-online
    .venv/bin/python bench/online_vs_river.py [--runs 200] [--stable 1000000]

driftloop is configured as the drift service configures it (driftloop.drift.online):
  service: k = 0.25 + 2/sqrt(2000), h = threshold_for(0.25 + 1/sqrt(2000),
           10,000,000 x 21), the default
           model-wide budget of one false alarm per 10M events shared by 21 streams;
  budget:  k = 0.25, h = threshold_for(0.25, 10,000), one false alarm per 10,000 events
           per stream (the stated budget itself).
CusumBank is fed batches of 1,000 events (as the service feeds consumer batches); river's
detectors one value at a time (their API), in a Python loop. Alarms are scored by the core
of `driftloop drift evaluate` (driftloop.drift.evaluation: `score` counts the delay and
the false alarms, `river_alarms` feeds river), so the benchmark and the command count alike.

- Cost: time in CusumBank.update over the stable run (20 streams x --stable events, exact
  baseline), per update per feature; also fed one event (20 features) at a time. river:
  time of the update loop over its stable runs, per update.
- Delay: --runs seeded standard normal streams per shift, the mean shifting by 1, 0.5 and
  0.25 sigma at t = 1000; delay = samples from the change to the first alarm at or after
  it, the alarming one included (median; runs without an alarm within --horizon samples
  count as never). Alarms before t = 1000 are false alarms (column "pre-change": the
  runs x 1,000 pre-change values are the same for every shift, so it is counted once).
- False alarms: alarms on stable standard normal data, per 10,000 events per stream.
  driftloop: 20 streams x --stable events, standardised with the exact mean and std, and
  again with a mean and std estimated from 2,000 reference rows per stream (as a baseline
  frozen from training data is); river: --river-streams streams x 100,000 events.
Goals: delay <= 1.2x ADWIN's at 1 and 0.5 sigma; <= 2 us per update per feature; <= 1
false alarm per 10,000 stable events per feature.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from river import drift

from driftloop.drift.evaluation import RiverDetector, river_alarms, score
from driftloop.stats import CusumBank, threshold_for
from driftloop.stats.cusum import DEFAULT_K

FloatArray = npt.NDArray[np.float64]
CHANGE = 1000
SHIFTS = (1.0, 0.5, 0.25)
STREAMS = 20
BATCH = 1000
REFERENCE_ROWS = 2000
RIVER_STABLE = 100_000
# The service raises k by two standard errors of a 2,000-row baseline and takes the
# threshold of k raised by one (driftloop.drift.online).
SERVICE_K = DEFAULT_K + 2.0 / math.sqrt(REFERENCE_ROWS)
SERVICE_H_K = DEFAULT_K + 1.0 / math.sqrt(REFERENCE_ROWS)
CONFIGS = {
    "service": (SERVICE_K, threshold_for(SERVICE_H_K, 10_000_000 * 21)),
    "budget": (DEFAULT_K, threshold_for(DEFAULT_K, 10_000)),
}


@dataclass
class Result:
    name: str
    ns_per_update: float = math.nan
    delays: dict[float, list[float]] = field(default_factory=dict)
    pre_change: int = 0
    stable_alarms: int = 0
    stable_events: int = 0
    estimated_alarms: int = 0
    estimated_events: int = 0

    def median_delay(self, shift: float) -> float:
        return statistics.median(self.delays[shift])


def noise(runs: int, length: int) -> FloatArray:
    """Run r's stream is default_rng(r).normal(length): the same for every detector."""
    return np.column_stack([np.random.default_rng(r).normal(size=length) for r in range(runs)])


def cusum_delays(result: Result, k: float, h: float, base: FloatArray) -> None:
    runs = base.shape[1]
    for shift in SHIFTS:
        x = base.copy()
        x[CHANGE:] += shift
        bank = CusumBank(runs, h, k)
        alarms: list[list[int]] = [[] for _ in range(runs)]
        detected = np.zeros(runs, dtype=bool)
        for start in range(0, x.shape[0], BATCH):
            for alarm in bank.update(x[start : start + BATCH]):
                alarms[alarm.stream].append(alarm.index)
                detected[alarm.stream] |= alarm.index >= CHANGE
            if start >= CHANGE and detected.all():
                break
        outcomes = [score(result.name, run, CHANGE, x.shape[0]) for run in alarms]
        result.delays[shift] = [math.inf if o.delay is None else o.delay for o in outcomes]
        result.pre_change = sum(o.false_alarms for o in outcomes)


def cusum_stable(
    results: dict[str, Result], events: int, seed: int = 1_000_003
) -> dict[str, list[float]]:
    """Every driftloop configuration over the same 20 x `events` stable values; returns
    the update times per configuration (exact baseline)."""
    rng = np.random.default_rng(seed)
    reference = np.random.default_rng(seed + 1).normal(size=(REFERENCE_ROWS, STREAMS))
    mean, std = reference.mean(axis=0), reference.std(axis=0)
    exact = {name: CusumBank(STREAMS, h, k) for name, (k, h) in CONFIGS.items()}
    estimated = {name: CusumBank(STREAMS, h, k) for name, (k, h) in CONFIGS.items()}
    times: dict[str, list[float]] = {name: [] for name in CONFIGS}
    chunk = 100 * BATCH
    for _ in range(0, events, chunk):
        x = rng.normal(size=(chunk, STREAMS))
        z = (x - mean) / std
        for name in CONFIGS:
            for start in range(0, chunk, BATCH):
                started = time.perf_counter()
                alarms = exact[name].update(x[start : start + BATCH])
                times[name].append(time.perf_counter() - started)
                results[name].stable_alarms += len(alarms)
                results[name].estimated_alarms += len(
                    estimated[name].update(z[start : start + BATCH])
                )
    for name in CONFIGS:
        results[name].stable_events = exact[name].events * STREAMS
        results[name].estimated_events = estimated[name].events * STREAMS
    return times


def one_at_a_time_us(k: float, h: float, events: int = 10_000) -> float:
    """Microseconds per CusumBank.update of a single event of 20 features."""
    bank = CusumBank(STREAMS, h, k)
    z = np.random.default_rng(7).normal(size=(events, 1, STREAMS))
    started = time.perf_counter()
    for row in z:
        bank.update(row)
    return (time.perf_counter() - started) / events * 1e6


def river_detector(
    result: Result, make: Callable[[], RiverDetector], base: FloatArray, streams: int
) -> None:
    runs = base.shape[1]
    for shift in SHIFTS:
        delays, pre = [], 0
        for run in range(runs):
            values = base[:, run].copy()
            values[CHANGE:] += shift
            found = river_alarms(make(), values.tolist(), stop_from=CHANGE)
            outcome = score(result.name, found, CHANGE, values.size)
            delays.append(math.inf if outcome.delay is None else outcome.delay)
            pre += outcome.false_alarms
        result.delays[shift] = delays
        result.pre_change = pre
    elapsed, alarms = 0.0, 0
    for stream in range(streams):
        values = np.random.default_rng(2_000_003 + stream).normal(size=RIVER_STABLE).tolist()
        detector = make()
        started = time.perf_counter()
        alarms += len(river_alarms(detector, values))
        elapsed += time.perf_counter() - started
    result.stable_alarms = alarms
    result.stable_events = streams * RIVER_STABLE
    result.ns_per_update = elapsed / result.stable_events * 1e9


def adwin_detector() -> RiverDetector:
    return drift.ADWIN(delta=0.002)  # type: ignore[no-untyped-call]  # river leaves it untyped


def show_delay(value: float, horizon: int) -> str:
    return f">{horizon}" if math.isinf(value) else f"{value:.0f}"


def main(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    length = CHANGE + args.horizon
    print(
        f"{args.runs} seeded N(0,1) runs per shift, change at t={CHANGE}; stable: driftloop "
        f"{STREAMS} x {args.stable:,}, river {args.river_streams} x {RIVER_STABLE:,}",
        flush=True,
    )
    base = noise(args.runs, length)
    results = {
        name: Result(f"driftloop CUSUM {name} k={k:.3f} h={h:.2f}")
        for name, (k, h) in CONFIGS.items()
    }
    print("[1/3] driftloop CusumBank (batches of 1,000 events)", flush=True)
    for name, (k, h) in CONFIGS.items():
        cusum_delays(results[name], k, h, base)
    times = cusum_stable(results, args.stable)
    for name in CONFIGS:
        results[name].ns_per_update = sum(times[name]) / results[name].stable_events * 1e9
    single_us = one_at_a_time_us(*CONFIGS["service"])
    print("[2/3] river ADWIN(delta=0.002), one value at a time", flush=True)
    adwin = Result("river ADWIN delta=0.002")
    river_detector(adwin, adwin_detector, base, args.river_streams)
    print("[3/3] river PageHinkley() defaults, one value at a time", flush=True)
    hinkley = Result("river PageHinkley defaults")
    river_detector(hinkley, drift.PageHinkley, base, args.river_streams)
    everyone = [*results.values(), adwin, hinkley]

    shifts = "".join(f"{f'{s:g} sd':>8}" for s in SHIFTS)
    print(
        f"\n  {'detector':<38} {'ns/upd':>7} {'median delay (samples)':>24}   "
        f"{'false alarms / 10k / stream':>28}"
    )
    print(f"  {'':<38} {'':>7}{shifts}   {'stable':>16} {'2000-row base':>14} {'pre-change':>10}")
    for r in everyone:
        delays = "".join(f"{show_delay(r.median_delay(s), args.horizon):>8}" for s in SHIFTS)
        stable = f"{r.stable_alarms / r.stable_events * 1e4:.4f} ({r.stable_alarms})"
        estimated = (
            f"{r.estimated_alarms / r.estimated_events * 1e4:.4f} ({r.estimated_alarms})"
            if r.estimated_events
            else "-"
        )
        print(
            f"  {r.name:<38} {r.ns_per_update:7.1f}{delays}   {stable:>16} {estimated:>14} "
            f"{r.pre_change:>10}"
        )
    print(
        f"\n  driftloop fed one event of {STREAMS} features at a time: {single_us:.1f} us per "
        f"event, {single_us * 1000 / STREAMS:.0f} ns per update per feature"
    )
    print(
        f"  stable events: driftloop {results['service'].stable_events:,} per configuration; "
        f"river {adwin.stable_events:,}; pre-change: alarms in the "
        f"{args.runs} x {CHANGE} values before the change"
    )
    never = {
        r.name: [sum(math.isinf(d) for d in r.delays[s]) for s in SHIFTS]
        for r in everyone
        if any(math.isinf(d) for s in SHIFTS for d in r.delays[s])
    }
    if never:
        print(f"  runs with no alarm within {args.horizon} samples (1/0.5/0.25 sigma): {never}")

    print("\n  ratios (goal: delay <= 1.2x ADWIN at 1 and 0.5 sigma)")
    ok = True
    for name, r in results.items():
        ratio = {s: r.median_delay(s) / adwin.median_delay(s) for s in SHIFTS}
        cost = adwin.ns_per_update / r.ns_per_update
        print(
            f"    {name:<8} delay / ADWIN: "
            + ", ".join(f"{s:g} sd {ratio[s]:.2f}x" for s in SHIFTS)
            + f"; ADWIN ns per update / driftloop's: {cost:.1f}x"
        )
        rate = r.stable_alarms / r.stable_events * 1e4
        met = ratio[1.0] <= 1.2 and ratio[0.5] <= 1.2 and r.ns_per_update <= 2000 and rate <= 1
        print(f"             goals met (delay, <= 2 us/update, <= 1 false alarm/10k): {met}")
        ok = ok and met
    print(f"\n  versions: river {importlib.metadata.version('river')}, numpy {np.__version__}")
    print(f"  took {time.perf_counter() - started:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=200, help="seeded runs per shift")
    parser.add_argument("--horizon", type=int, default=20_000, help="samples after the change")
    parser.add_argument("--stable", type=int, default=1_000_000, help="events per stream")
    parser.add_argument("--river-streams", type=int, default=5, help="x 100,000 stable")
    sys.exit(main(parser.parse_args()))
