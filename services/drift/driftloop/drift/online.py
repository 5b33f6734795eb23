"""Online detectors of one model version: a CUSUM per numeric feature, on the output, and
on the error stream once labels join (driftloop.stats.cusum).

Streams are standardised with the baseline (feature and output mean and std; the holdout
error rate for classifiers). The false-alarm budget is shared: the model as a whole gets
`false_alarm_events` stable events between false alarms on average, so each of its m
streams gets m times that (with the default 10,000,000 and 22 streams: 1 in 220 million per
stream, against a budget of 1 in 10,000).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from driftloop.drift.outcomes import CLASSIFIERS
from driftloop.drift.report import OUTPUT
from driftloop.models.baseline import Baseline
from driftloop.stats import CusumBank, threshold_for
from driftloop.stats.cusum import DEFAULT_K

FloatArray = npt.NDArray[np.float64]
ERROR = "__error__"


@dataclass(frozen=True)
class OnlineAlarm:
    kind: str  # "data", "prediction" or "concept"
    stream: str
    index: int
    start: int
    direction: int
    statistic: float


class VersionMonitor:
    def __init__(self, baseline: Baseline, output_kind: str, false_alarm_events: float) -> None:
        numeric = [b for b in baseline.numeric if b.std > 0 and math.isfinite(b.std)]
        self.features = [b.feature for b in numeric]
        means = [b.mean for b in numeric]
        stds = [b.std for b in numeric]
        self.has_output = baseline.output is not None and baseline.output.std > 0
        if baseline.output is not None and self.has_output:
            means.append(baseline.output.mean)
            stds.append(baseline.output.std)
        self._mean = np.asarray(means, dtype=np.float64)
        self._std = np.asarray(stds, dtype=np.float64)
        accuracy = baseline.holdout_metrics.get("accuracy", float("nan"))
        self._error_rate = 1.0 - accuracy if output_kind in CLASSIFIERS else float("nan")
        self.has_errors = 0.0 < self._error_rate < 1.0
        streams = len(means) + int(self.has_errors)
        # The baseline's mean and std are estimates: a reference value raised by two of the
        # mean's standard errors keeps an estimation error from eating the alarm budget.
        # The reference sample's size is a lower bound on the training rows.
        reference = max((len(b.sample) for b in numeric), default=0)
        k = DEFAULT_K + (2.0 / math.sqrt(reference) if reference else 0.0)
        h = threshold_for(k, false_alarm_events * max(streams, 1))
        self._inputs = CusumBank(len(means), h, k) if means else None
        self._errors = (
            CusumBank(1, threshold_for(DEFAULT_K, false_alarm_events * max(streams, 1)))
            if self.has_errors
            else None
        )

    @property
    def streams(self) -> list[str]:
        return [*self.features, *([OUTPUT] if self.has_output else [])]

    def observe(self, features: FloatArray, outputs: FloatArray) -> list[OnlineAlarm]:
        """Feed predictions: features (n x len(self.features)) and outputs (n)."""
        if self._inputs is None:
            return []
        values = np.column_stack([features, outputs]) if self.has_output else features
        z = (values - self._mean) / self._std
        names = self.streams
        return [
            OnlineAlarm(
                "prediction" if names[a.stream] == OUTPUT else "data",
                names[a.stream],
                a.index,
                a.start,
                a.direction,
                a.statistic,
            )
            for a in self._inputs.update(z)
        ]

    def observe_errors(self, errors: FloatArray) -> list[OnlineAlarm]:
        """Feed the 0/1 errors of predictions whose labels arrived; only a rise alarms."""
        if self._errors is None or errors.size == 0:
            return []
        p = self._error_rate
        z = (errors.reshape(-1, 1) - p) / math.sqrt(p * (1.0 - p))
        return [
            OnlineAlarm("concept", ERROR, a.index, a.start, a.direction, a.statistic)
            for a in self._errors.update(z)
            if a.direction > 0
        ]
