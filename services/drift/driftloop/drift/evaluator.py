"""Windowed drift: reports on demand and, periodically, for every version that served
live traffic lately (last-N window), written to drift_metrics and alerted on."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable

from driftloop.drift import metrics
from driftloop.drift.alerts import STATE_NAMES, Alerts
from driftloop.drift.baselines import BaselineSource
from driftloop.drift.report import Report, Thresholds, report_of_stats
from driftloop.drift.store import DriftStore
from driftloop.drift.windows import Window, WindowReader
from driftloop.kit.errors import DriftloopError

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
        time_window: dt.timedelta = dt.timedelta(hours=1),
        every_rows: int = 0,
    ) -> None:
        """`every_rows`: a round also starts once that many predictions were logged since
        the last one (0: on the clock only)."""
        self._reader = reader
        self._store = store
        self._baselines = baselines
        self._alerts = alerts
        self._thresholds = thresholds
        self._last_n = last_n
        self._min_rows = min_rows
        self._time_window = time_window
        self._recorded: set[tuple[str, str, dt.datetime]] = set()
        self._every_rows = every_rows
        self._arrived = 0
        self._enough = asyncio.Event()

    def arrived(self, rows: int) -> None:
        """Count rows the sink logged: enough of them start the next round now (a burst of
        traffic can be over well within the clock's period)."""
        self._arrived += rows
        if self._every_rows and self._arrived >= self._every_rows:
            self._enough.set()

    async def report(self, model: str, version: str, window: Window) -> Report:
        """The drift report of a version over a window (NOT_FOUND for an unknown version),
        from the window's counts against the baseline (`WindowReader.counts`)."""
        started = time.perf_counter()
        info = await self._baselines.get(model, version)
        baseline = info.baseline
        data = await self._reader.counts(info.model, info.version, window, baseline)
        report = await asyncio.to_thread(
            report_of_stats,
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

    def last_time_window(self, now: dt.datetime) -> Window:
        """The last complete fixed time window before `now` (aligned to the epoch)."""
        period = self._time_window.total_seconds()
        end = dt.datetime.fromtimestamp(now.timestamp() // period * period, tz=dt.UTC)
        return Window(start=end - self._time_window, end=end)

    async def evaluate(
        self, model: str, version: str, window: Window | None = None
    ) -> Report | None:
        """Report on a window (default: the last N rows), record it in drift_metrics and
        alert on it (None: too few rows)."""
        report = await self.report(model, version, window or Window(last_n=self._last_n))
        if report.rows < self._min_rows:
            return None
        await self._store.write_report(report, dt.datetime.now(dt.UTC))
        for alert in await self._alerts.from_report(report):
            log.warning(
                "drift alert",
                extra={
                    "model": model,
                    "version": version,
                    "alert_id": alert.alert_id,
                    "state": STATE_NAMES.get(alert.state, "open"),
                    "summary": alert.summary,
                },
            )
        return report

    async def evaluate_active(self) -> int:
        """One round over the active versions; a failing version does not stop the round."""
        since = dt.datetime.now(dt.UTC) - ACTIVE_WITHIN
        done = 0
        fixed = self.last_time_window(dt.datetime.now(dt.UTC))
        for model, version in await self._store.active_versions(since):
            try:
                if await self.evaluate(model, version) is not None:
                    done += 1
                # Each complete fixed window once (a restart recomputes it: same rows).
                assert fixed.end is not None
                if (model, version, fixed.end) not in self._recorded:
                    await self.evaluate(model, version, fixed)
                    self._recorded.add((model, version, fixed.end))
            except DriftloopError as error:
                # E.g. a version the registry does not know: say so, without a traceback.
                log.warning(
                    "drift evaluation skipped",
                    extra={"model": model, "version": version, "error": str(error)},
                )
            except Exception:
                log.exception("drift evaluation of %s v%s failed", model, version)
        return done

    async def run(self, every_s: float, mine: Callable[[], bool] = lambda: True) -> None:
        """Evaluate every `every_s`, or sooner once `every_rows` rows arrived, while
        `mine()` says this replica is the one to."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(every_s):
                    await self._enough.wait()
            self._enough.clear()
            self._arrived = 0
            if not mine():
                continue
            try:
                await self.evaluate_active()
            except Exception:
                log.exception("drift evaluation round failed; retrying next round")
