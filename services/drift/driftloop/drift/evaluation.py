"""Replays a stream with injected drifts through the online detectors and scores each one:
did it detect the drift, how many events after the onset, how many false alarms before it
(the core of `driftloop drift evaluate` and of bench/online_vs_river.py).

The reference rows give the baseline, as registration freezes it from training data
(driftloop.models.baseline), and driftloop's detector is the drift service's own
(driftloop.drift.online.VersionMonitor, built as the service builds it): whatever streams
the online module watches are evaluated, so a detector added there is picked up here.
river's ADWIN and Page-Hinkley, when river is installed, watch the drifted feature's
values one at a time (their API), side by side.

Counting, the same for every detector: events are numbered from 0 at the first streamed
row (the reference rows are not replayed); an alarm on the drifted feature's stream at an
event before the onset is a false alarm; the delay is the events from the onset to the
first alarm at or after it, the alarming one included (an alarm at the onset itself is a
delay of 1); a drift with no alarm by the end of the stream is not detected.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from driftloop.drift.online import VersionMonitor, encode
from driftloop.kit.errors import InvalidArgument
from driftloop.models.baseline import Baseline, categorical_baseline, numeric_baseline

FloatArray = npt.NDArray[np.float64]
Column = npt.NDArray[np.float64] | npt.NDArray[np.str_]
Progress = Callable[[int, int], None]

# Each kind of drift, what its size means, and the size when none is given.
KINDS: dict[str, tuple[str, float]] = {
    "shift": ("the mean moves by size reference standard deviations", 1.0),
    "scale": ("the variance is multiplied by size (about the reference mean)", 2.0),
    "constant": ("the value is stuck at size (default: the reference mean)", math.nan),
    "missing": ("a share size of the values goes missing", 0.5),
    "category": ("a new category takes a share size of a categorical feature", 0.2),
}
NEW_CATEGORY = "__new__"
BATCH = 1000


@dataclass(frozen=True)
class Injection:
    feature: str
    kind: str
    size: float
    onset: int

    def label(self) -> str:
        size = "" if math.isnan(self.size) else f" {self.size:g}"
        return f"{self.feature}: {self.kind}{size} at event {self.onset:,}"


@dataclass(frozen=True)
class Outcome:
    detector: str
    detected: bool
    delay: int | None  # events after the onset, the alarming one included
    false_alarms: int  # alarms before the onset
    stable_events: int  # events before the onset

    @property
    def false_alarms_per_10k(self) -> float:
        return self.false_alarms / self.stable_events * 1e4 if self.stable_events else math.nan


@dataclass(frozen=True)
class Evaluation:
    injection: Injection
    outcomes: list[Outcome]
    notes: list[str]


class RiverDetector(Protocol):
    """What river.drift's detectors offer: update one value, then read drift_detected."""

    @property
    def drift_detected(self) -> bool: ...

    def update(self, x: float) -> Any: ...


def parse_injection(text: str, stream_events: int | None = None) -> Injection:
    """`feature=x3,kind=shift,size=0.5,onset=5000` (size optional: KINDS' default; onset
    optional: the middle of the stream)."""
    parts: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or key.strip() not in {"feature", "kind", "size", "onset"}:
            raise InvalidArgument(
                "inject", f"{item!r}: expected feature=NAME,kind=KIND,size=X,onset=N"
            )
        parts[key.strip()] = value.strip()
    if "feature" not in parts or "kind" not in parts:
        raise InvalidArgument("inject", f"{text!r}: feature= and kind= are required")
    kind = parts["kind"]
    if kind not in KINDS:
        raise InvalidArgument("inject", f"kind {kind!r}: one of {', '.join(KINDS)}")
    try:
        size = float(parts["size"]) if "size" in parts else KINDS[kind][1]
        if "onset" in parts:
            onset = int(parts["onset"])
        elif stream_events is not None:
            onset = stream_events // 2
        else:
            raise InvalidArgument("inject", f"{text!r}: onset= is required")
    except ValueError as error:
        raise InvalidArgument("inject", f"{text!r}: {error}") from None
    if onset < 0 or (stream_events is not None and onset >= stream_events):
        raise InvalidArgument(
            "inject", f"onset {onset}: an event of the stream (0 to {stream_events})"
        )
    if kind in ("missing", "category") and not 0.0 < size <= 1.0:
        raise InvalidArgument("inject", f"size {size:g}: a {kind} share is in (0, 1]")
    if kind == "scale" and size <= 0:
        raise InvalidArgument("inject", f"size {size:g}: a variance factor is positive")
    return Injection(parts["feature"], kind, size, onset)


def reference_of(columns: Mapping[str, Column], seed: int = 0) -> Baseline:
    """The baseline of reference columns (no model: no output stream), as registration
    computes it: numbers (float) by their bins and sample, text by category shares."""
    rng = np.random.default_rng(seed)
    numeric = [
        numeric_baseline(name, column.astype(np.float64), rng)
        for name, column in columns.items()
        if column.dtype.kind == "f"
    ]
    categorical = [
        categorical_baseline(name, column.astype(np.str_))
        for name, column in columns.items()
        if column.dtype.kind != "f"
    ]
    return Baseline(numeric=numeric, categorical=categorical)


def inject(
    column: Column, injection: Injection, baseline: Baseline, rng: np.random.Generator
) -> Column:
    """A copy of the streamed column with the drift from event `onset` on."""
    onset = injection.onset
    numeric = next((b for b in baseline.numeric if b.feature == injection.feature), None)
    drifted = column.copy()
    tail = drifted[onset:]
    if injection.kind == "missing":
        gone = rng.random(tail.size) < injection.size
        tail[gone] = math.nan if column.dtype.kind == "f" else ""
        return drifted
    if injection.kind == "category":
        if column.dtype.kind == "f":
            raise InvalidArgument("inject", f"{injection.feature}: category needs a text feature")
        new = rng.random(tail.size) < injection.size
        out = drifted.astype(np.object_)
        out[onset:][new] = NEW_CATEGORY
        return out.astype(np.str_)
    if numeric is None or column.dtype.kind != "f":
        raise InvalidArgument(
            "inject", f"{injection.feature}: {injection.kind} needs a numeric feature"
        )
    values = column.astype(np.float64)
    after = values[onset:]
    if injection.kind == "shift":
        after += injection.size * numeric.std
    elif injection.kind == "scale":
        after[:] = numeric.mean + (after - numeric.mean) * math.sqrt(injection.size)
    else:  # constant
        after[:] = numeric.mean if math.isnan(injection.size) else injection.size
    return values


def score(detector: str, alarms: Iterable[int], onset: int, events: int) -> Outcome:
    """The outcome of a detector's alarm events (any order) against the onset."""
    indices = sorted(alarms)
    after = [i for i in indices if i >= onset]
    delay = after[0] - onset + 1 if after else None
    return Outcome(
        detector, delay is not None, delay, len(indices) - len(after), min(onset, events)
    )


def river_alarms(
    detector: RiverDetector, values: Sequence[float], stop_from: int | None = None
) -> list[int]:
    """The events at which a river detector, fed the values one at a time, signals drift
    (a missing value, NaN, is skipped: river has no notion of it); it stops at its first
    alarm at or after `stop_from`, if given."""
    alarms = []
    for index, value in enumerate(values):
        if value != value:  # NaN
            continue
        detector.update(value)
        if detector.drift_detected:
            alarms.append(index)
            if stop_from is not None and index >= stop_from:
                break
    return alarms


def river_detectors() -> dict[str, Callable[[], RiverDetector]] | None:
    """river's ADWIN(delta=0.002) and PageHinkley() (defaults), or None without river."""
    try:
        from river import drift
    except ImportError:
        return None
    return {
        "river ADWIN": lambda: drift.ADWIN(delta=0.002),  # type: ignore[no-untyped-call]  # untyped in river
        "river PageHinkley": drift.PageHinkley,
    }


def _about(stream: str, feature: str) -> bool:
    """Whether a detector stream watches the feature (its name, or the name and a suffix
    such as `feature:missing`)."""
    return re.match(rf"{re.escape(feature)}(\W|$)", stream) is not None


def monitor_alarms(
    monitor: VersionMonitor,
    baseline: Baseline,
    columns: Mapping[str, Column],
    events: int,
    progress: Progress | None = None,
) -> list[tuple[str, int]]:
    """Every (stream, event) alarm of the online monitor over the columns, fed in
    batches of BATCH events as the service feeds consumer batches (categorical features
    as codes, an empty value as a missing one, when the monitor watches categories)."""
    alarms = []
    matrix = (
        np.column_stack([columns[name].astype(np.float64) for name in monitor.features])
        if monitor.features
        else np.zeros((events, 0))
    )
    outputs = np.zeros(events)
    codes = None
    if monitor.categorical:
        known = {c.feature: c.categories for c in baseline.categorical}
        codes = np.column_stack(
            [encode(_with_none(columns[name]), known[name]) for name in monitor.categorical]
        )
    for start in range(0, events, BATCH):
        stop = min(start + BATCH, events)
        batch = (matrix[start:stop], outputs[start:stop])
        found = (
            monitor.observe(*batch) if codes is None else monitor.observe(*batch, codes[start:stop])
        )
        alarms += [(a.stream, a.index) for a in found]
        if progress is not None:
            progress(stop, events)
    return alarms


def _with_none(column: Column) -> npt.NDArray[np.object_]:
    """A text column as objects, None where empty (a missing value, as read_table reads it)."""
    values = column.astype(np.object_)
    values[column == ""] = None
    return values


def evaluate(
    baseline: Baseline,
    stream: Mapping[str, Column],
    injections: Sequence[Injection],
    false_alarm_events: float = 10_000_000,
    seed: int = 0,
    with_river: bool = True,
    progress: Progress | None = None,
) -> list[Evaluation]:
    """Each injection on its own replay of the stream: driftloop's online detector (the
    service's, with its false-alarm budget per model, over the baseline: `reference_of`
    reference rows, or a registered version's) and river's, scored on the drifted
    feature."""
    # Features only: a model's output is not replayed (a registered version's output
    # baseline is dropped, so its streams do not watch zeros).
    baseline = replace(baseline, output=None, output_labels=None)
    absent = [
        name
        for name in [
            *(b.feature for b in baseline.numeric),
            *(c.feature for c in baseline.categorical),
        ]
        if name not in stream
    ]
    if absent:
        raise InvalidArgument(
            "data", f"the stream has no column {', '.join(absent)} of the reference"
        )
    events = len(next(iter(stream.values())))
    rivers = river_detectors() if with_river else None
    results = []
    for number, injection in enumerate(injections):
        if injection.feature not in stream:
            raise InvalidArgument("inject", f"no feature {injection.feature!r} in the stream")
        rng = np.random.default_rng(seed + 1 + number)
        column = inject(stream[injection.feature], injection, baseline, rng)
        columns = {**stream, injection.feature: column}
        notes = []
        monitor = VersionMonitor(baseline, "regression", false_alarm_events)
        alarms = monitor_alarms(monitor, baseline, columns, events, progress)
        watched = [i for s, i in alarms if _about(s, injection.feature)]
        outcomes = [score("driftloop online", watched, injection.onset, events)]
        if not any(_about(s, injection.feature) for s in monitor.watched):
            notes.append(f"driftloop: no online stream watches {injection.feature}")
        if with_river and rivers is None:
            notes.append("river is not installed: no ADWIN or Page-Hinkley columns")
        elif rivers and column.dtype.kind != "f":
            notes.append(f"river: {injection.feature} is not numeric")
        elif rivers:
            values = column.tolist()
            for name, make in rivers.items():
                outcomes.append(score(name, river_alarms(make(), values), injection.onset, events))
        results.append(Evaluation(injection, outcomes, notes))
    return results
