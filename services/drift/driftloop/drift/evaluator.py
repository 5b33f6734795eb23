"""Windowed drift: reports on demand and, periodically, for every version that served
live traffic lately (last-N window), written to drift_metrics and alerted on."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time

from driftloop.drift import metrics
from driftloop.drift.alerts import Alerts
from driftloop.drift.baselines import BaselineSource
from driftloop.drift.report import Report, Thresholds, build_report
from driftloop.drift.store import DriftStore
from driftloop.drift.windows import Window, WindowReader

log = logging.getLogger(__name__)
# Versions with live predictions in this period are evaluated each round.
ACTIVE_WITHIN = dt.timedelta(days=1)


class Evaluator:
    def __init__(
        self,
        reader: WindowReader,
        store: DriftStore,
        baselines: BaselineSource,
        alerts: Alerts,
        thresholds: Thresholds,
        last_n: int,
        min_rows: int,
    ) -> None:
        self._reader = reader
        self._store = store
        self._baselines = baselines
        self._alerts = alerts
        self._thresholds = thresholds
        self._last_n = last_n
        self._min_rows = min_rows

    async def report(self, model: str, version: str, window: Window) -> Report:
        """The drift report of a version over a window (NOT_FOUND for an unknown version)."""
        started = time.perf_counter()
        info = await self._baselines.get(model, version)
        baseline = info.baseline
        data = await self._reader.read(
            info.model,
            info.version,
            window,
            [item.feature for item in baseline.numeric],
            [item.feature for item in baseline.categorical],
        )
        report = await asyncio.to_thread(
            build_report,
            info.model,
            info.version,
            window.kind,
            info.output_kind,
            baseline,
            data,
            self._thresholds,
        )
        metrics.REPORT_SECONDS.observe(time.perf_counter() - started)
        return report

    async def evaluate(self, model: str, version: str) -> Report | None:
        """Report on the last N rows, record it and alert on it (None: too few rows)."""
        report = await self.report(model, version, Window(last_n=self._last_n))
        if report.rows < self._min_rows:
            return None
        await self._store.write_report(report, dt.datetime.now(dt.UTC))
        for alert in await self._alerts.from_report(report):
            log.warning(
                "drift alert",
                extra={"model": model, "version": version, "summary": alert.summary},
            )
        return report

    async def evaluate_active(self) -> int:
        """One round over the active versions; a failing version does not stop the round."""
        since = dt.datetime.now(dt.UTC) - ACTIVE_WITHIN
        done = 0
        for model, version in await self._store.active_versions(since):
            try:
                if await self.evaluate(model, version) is not None:
                    done += 1
            except Exception:
                log.exception("drift evaluation of %s v%s failed", model, version)
        return done

    async def run(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.evaluate_active()
            except Exception:
                log.exception("drift evaluation round failed; retrying next round")
