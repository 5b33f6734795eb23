"""The windowed drift rule through the real ClickHouse engine: a seeded slow ramp's
prediction events written as the sink writes them (PredictionLog), then evaluated as the
drift service's periodic round does (Evaluator: WindowReader, build_report with the
service's default thresholds, drift_metrics, alerts)."""

from __future__ import annotations

import datetime as dt

import pytest

from driftloop.clickhouse.client import ClickHouse
from driftloop.clickhouse.prediction_log import PredictionLog
from driftloop.drift.alerts import Alerts
from driftloop.drift.baselines import VersionInfo
from driftloop.drift.config import DriftSettings
from driftloop.drift.evaluator import Evaluator
from driftloop.drift.server import thresholds_of
from driftloop.drift.store import DriftStore
from driftloop.drift.windows import Window, WindowReader
from driftloop.models.training import TrainedModel
from driftloop.v1 import events_pb2
from tests import drift_streams

MODEL = "slow"
RAMPED = {"x3", "x11"}


class OneVersion:
    """The BaselineSource of the one trained version."""

    def __init__(self, trained: TrainedModel) -> None:
        self._trained = trained

    async def get(self, model: str, version: str) -> VersionInfo:
        return VersionInfo(model, version, "binary", self._trained.baseline)


@pytest.fixture(scope="module")
def trained() -> TrainedModel:
    return drift_streams.train()


async def test_a_slow_ramp_is_flagged_on_exactly_its_features_by_the_last_n_window(
    clickhouse: ClickHouse, trained: TrainedModel
) -> None:
    # 5k stable rows, then x3 and x11 climb linearly to +0.25 sigma over 20k rows and stay
    # there for 5k: one prediction a second from T0.
    data = drift_streams.ramp(30_000, 61, tuple(sorted(RAMPED)), 0.25, 5_000, 25_000)
    events = drift_streams.stream(trained, data, model=MODEL, version="1").predictions
    log = PredictionLog(clickhouse)
    for first in range(0, len(events), 10_000):
        await log.write(predictions=events[first : first + 10_000])
    published: list[events_pb2.DriftAlert] = []

    async def publish(alert: events_pb2.DriftAlert) -> None:
        published.append(alert)

    settings = DriftSettings()
    evaluator = Evaluator(
        WindowReader(clickhouse),
        DriftStore(clickhouse),
        OneVersion(trained),
        Alerts(publish, settings.alert_debounce_s),
        thresholds_of(settings),
        settings.window_last_n,
        settings.window_min_rows,
    )
    # The stable stretch, as a fixed time window: nothing.
    stable_end = drift_streams.T0 + dt.timedelta(seconds=5_000)
    stable = await evaluator.report(MODEL, "1", Window(start=drift_streams.T0, end=stable_end))
    assert stable.rows == 5_000 and not stable.data_drift
    # The last 10k rows (offsets 0.1875 sigma and up): flagged on x3 and x11 alone, by the
    # effect size (their PSI stays under 0.1), stored and alerted as a warning.
    report = await evaluator.evaluate(MODEL, "1")
    assert report is not None and report.rows == settings.window_last_n
    assert {f.stream for f in report.features if f.drifted} == RAMPED
    assert all(f.psi < 0.1 for f in report.features if f.stream in RAMPED)
    stored = await clickhouse.query(
        f"SELECT stream FROM {clickhouse.table('drift_metrics')} FINAL "
        "WHERE model = {model:String} AND test = 'ks' AND drifted = 1",
        {"model": MODEL},
    )
    assert {row[0] for row in stored.rows} == RAMPED
    [alert] = published
    assert alert.kind == events_pb2.DRIFT_KIND_DATA
    assert alert.severity == events_pb2.SEVERITY_WARNING
    # Each named with the score that made it material: its KS distance.
    assert {(score.feature, score.test) for score in alert.features} == {
        (name, "ks") for name in RAMPED
    }
