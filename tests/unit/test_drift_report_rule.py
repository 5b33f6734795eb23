"""The windowed report's drift rule on seeded streams: a feature drifts when its change is
significantly more than negligible and material (PSI or effect size), so slow drift under
PSI 0.1 is seen and a huge stable window flags nothing."""

from __future__ import annotations

import numpy as np
import pytest

from driftloop.cli.drift import format_report
from driftloop.drift.report import Report, Thresholds, build_report
from driftloop.drift.servicer import report_to_proto
from driftloop.drift.windows import WindowData
from driftloop.models.training import TrainedModel
from driftloop.stats import category_counts, chi2_test
from tests import drift_streams

RAMPED = {"x3", "x11"}
WINDOW = 10_000


@pytest.fixture(scope="module")
def trained() -> TrainedModel:
    return drift_streams.with_plan(drift_streams.train())


def report(
    trained: TrainedModel, window: WindowData, thresholds: Thresholds | None = None
) -> Report:
    limits = thresholds or Thresholds()
    return build_report("m", "1", "last_n", "binary", trained.baseline, window, limits)


def flagged(result: Report) -> set[str]:
    return {f.stream for f in result.features if f.drifted}


def test_a_slow_ramp_to_a_quarter_sigma_is_flagged_on_exactly_its_two_features(
    trained: TrainedModel,
) -> None:
    # Stable for 10k rows, then x3 and x11 drift linearly to +0.25 sigma over 40k rows and
    # stay there; the service's last-N window (10k) at the end sees the ramp completed.
    data = drift_streams.ramp(60_000, 41, tuple(sorted(RAMPED)), 0.25, 10_000, 50_000)
    last = data.take(np.arange(50_000, 60_000))
    result = report(trained, drift_streams.window_data(trained, last))
    assert flagged(result) == RAMPED
    for feature in (f for f in result.features if f.stream in RAMPED):
        # Under PSI 0.1 (the old rule never flagged it), but material by its KS distance
        # and highly significant even against the negligible margin.
        assert feature.psi < 0.1 and feature.effect >= 0.08 and feature.p_value < 1e-8
        assert feature.evidence == ("ks", feature.effect)
    assert not result.major  # a slow drift is a warning, not a critical alert
    psi_only = Thresholds(effect_threshold=1.0)
    assert flagged(report(trained, drift_streams.window_data(trained, last), psi_only)) == set()


def test_the_windows_along_a_slow_ramp_flag_it_once_it_is_material(
    trained: TrainedModel,
) -> None:
    data = drift_streams.ramp(60_000, 42, tuple(sorted(RAMPED)), 0.25, 10_000, 50_000)
    seen = []
    for first in range(0, 60_000, WINDOW):
        rows = data.take(np.arange(first, first + WINDOW))
        seen.append(flagged(report(trained, drift_streams.window_data(trained, rows))))
    # Windows of 10k: stable, then the ramp's quarters (mean offsets 0.03, 0.09, 0.16,
    # 0.22 sigma), then the plateau. Nothing is flagged before the offset is material.
    assert seen[:3] == [set(), set(), set()]
    assert all(s <= RAMPED for s in seen)
    assert seen[4:] == [RAMPED, RAMPED]


def test_a_stable_window_of_a_million_rows_flags_nothing(trained: TrainedModel) -> None:
    rows = 1_000_000
    plan = drift_streams.plans(rows, 31)
    window = drift_streams.window_data(
        trained, drift_streams.table(rows, 31), categories={"plan": plan}
    )
    result = report(trained, window)
    assert flagged(result) == set()
    assert not (result.data_drift or result.prediction_drift or result.major)
    # The plain chi-squared test finds the frozen shares' own estimation error (5,000
    # training rows); the test against the negligible margin does not.
    item = trained.baseline.categorical[0]
    counts = category_counts(plan.tolist(), item.categories)
    assert chi2_test([*item.frequencies, 0.0], counts).p_value < 1e-10
    plan_result = next(f for f in result.features if f.stream == "plan")
    assert plan_result.p_value == 1.0 and plan_result.effect < 0.02
    assert min(f.p_value for f in result.features) > 0.01


@pytest.mark.parametrize(("moved", "drifted"), [(0.03, False), (0.08, True)])
def test_a_category_share_move_is_material_by_the_share_of_rows_that_moved(
    trained: TrainedModel, moved: float, drifted: bool
) -> None:
    rows = 100_000
    window = drift_streams.window_data(
        trained,
        drift_streams.table(rows, 51),
        categories={"plan": drift_streams.plans(rows, 52, moved=moved)},
    )
    result = report(trained, window)
    plan = next(f for f in result.features if f.stream == "plan")
    # Both moves are significant; 8% of rows moving from 'basic' to 'trial' is material
    # although its PSI stays under 0.1, 3% is not. (The frozen shares are themselves ~1.2
    # points off the stream's, hence the effect's tolerance.)
    assert plan.p_value < 1e-10 and plan.psi < 0.1
    assert plan.effect == pytest.approx(moved, abs=0.015)
    assert flagged(result) == ({"plan"} if drifted else set())
    assert plan.material_by == ("tvd" if drifted else "")


def test_the_cli_shows_the_effect_size_that_flagged_a_slow_drift(trained: TrainedModel) -> None:
    data = drift_streams.ramp(20_000, 43, tuple(sorted(RAMPED)), 0.25, 0, 10_000)
    last = data.take(np.arange(10_000, 20_000))
    result = report(trained, drift_streams.window_data(trained, last))
    lines = format_report(report_to_proto(result)).splitlines()
    [header] = [line for line in lines if line.split()[0] == "feature"]
    assert header.split()[:3] == ["feature", "PSI", "effect"]
    for name in RAMPED:
        feature = next(f for f in result.features if f.stream == name)
        [line] = [line for line in lines if line.split()[0] == name]
        cells = line.split()
        assert cells[1:3] == [f"{feature.psi:.3f}", f"{feature.effect:.3f}"]
        assert cells[-1] == "yes"
