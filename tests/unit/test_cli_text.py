"""The CLI's text answers (without --json): a routing policy, a baseline and a canary
analysis read as sentences and tables, not JSON. (--json stays pure JSON:
tests/e2e/test_cli_json.py.)"""

from __future__ import annotations

import datetime as dt

from google.protobuf.timestamp_pb2 import Timestamp

from driftloop.cli.drift import format_baseline, format_canary
from driftloop.cli.routing import format_policy
from driftloop.v1 import drift_pb2, events_pb2, registry_pb2

NOON = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)


def stamp(when: dt.datetime) -> Timestamp:
    value = Timestamp()
    value.FromDatetime(when)
    return value


def test_a_plain_policy_is_one_line() -> None:
    policy = events_pb2.RoutingPolicy(
        model="churn", stable_version="1", revision=3, updated=stamp(NOON), updated_by="ana"
    )
    assert format_policy(policy) == (
        "churn: stable version 1 (revision 3, updated 2026-11-29 12:00:00 by ana)"
    )


def test_a_policy_names_each_plan_in_force() -> None:
    policy = events_pb2.RoutingPolicy(
        model="churn",
        stable_version="1",
        revision=7,
        salt="churn",
        variants=[
            events_pb2.Variant(name="control", version="1", weight_bp=7500),
            events_pb2.Variant(name="treatment", version="3", weight_bp=2500),
        ],
        canary=events_pb2.CanaryPlan(
            candidate_version="2",
            steps=[events_pb2.CanaryStep(weight_bp=bp) for bp in (500, 2500, 5000)],
            current_step=1,
        ),
        shadow=events_pb2.ShadowPlan(versions=["4"], sample_bp=1050),
    )
    text = format_policy(policy)
    assert text.splitlines() == [
        "churn: stable version 1 (revision 7)",
        "  A/B: control = version 1 75%, treatment = version 3 25% (salt 'churn')",
        "  canary: version 2 at 25%, step 2 of 3 (5% -> 25% -> 50%)",
        "  shadow: version(s) 4 on 10.5% of requests",
    ]
    gated = events_pb2.RoutingPolicy(
        model="churn",
        stable_version="1",
        shadow_gate=events_pb2.ShadowGate(candidate_version="2", min_compared=500, min_labelled=50),
        blue_green=events_pb2.BlueGreen(
            active_version="2", switched=stamp(NOON), hold_until=stamp(NOON + dt.timedelta(hours=1))
        ),
    )
    assert format_policy(gated).splitlines()[1:] == [
        "  blue-green: version 2 active since 2026-11-29 12:00:00; version 1 kept loaded until "
        "2026-11-29 13:00:00",
        "  shadow first: version 2 mirrored until 500 requests are compared (50 of them "
        "labelled), then its canary",
    ]


def test_a_baseline_is_a_table_of_features_and_the_commonest_categories() -> None:
    baseline = registry_pb2.Baseline(
        numeric=[
            registry_pb2.NumericBaseline(
                feature="tenure", edges=[1.0, 2.0, 3.0], mean=12.25, std=4.5, nan_share=0.02
            )
        ],
        categorical=[
            registry_pb2.CategoricalBaseline(
                feature="plan",
                categories=["a", "b", "c", "d", "e", "f", "g"],
                frequencies=[0.05, 0.4, 0.2, 0.1, 0.1, 0.1, 0.05],
            )
        ],
        output=registry_pb2.NumericBaseline(feature="score", edges=[0.5], mean=0.3, std=0.2),
        output_labels=registry_pb2.CategoricalBaseline(
            categories=["0", "1"], frequencies=[0.7, 0.3]
        ),
        holdout_metrics=[registry_pb2.Metric(name="accuracy", value=0.91234)],
    )
    assert format_baseline("churn", "2", baseline).splitlines() == [
        "churn v2 baseline: 1 numeric, 1 categorical features",
        "  feature   mean   std  missing  bins",
        "  tenure    12.25  4.5  2.0%     4",
        "  (output)  0.3    0.2  0.0%     2",
        "  plan: b 40%, c 20%, d 10%, e 10%, f 10%, ... (2 more)",
        "  (predicted labels): 0 70%, 1 30%",
        "  holdout: accuracy 0.9123",
    ]
    assert format_baseline("churn", "3", registry_pb2.Baseline()) == (
        "churn v3 baseline: 0 numeric, 0 categorical features (registered without reference "
        "data: no drift is computed)"
    )


def test_a_canary_analysis_gives_the_verdict_both_versions_and_the_reasons() -> None:
    analysis = drift_pb2.CanaryAnalysis(
        stable=drift_pb2.VariantStats(
            version="1", requests=12000, error_rate=0.001, p99_latency_ms=4.25, labelled=900,
            accuracy=0.9,
        ),
        candidate=drift_pb2.VariantStats(
            version="2", requests=800, error_rate=0.0, p99_latency_ms=3.5, labelled=0,
            accuracy=float("nan"),
        ),
        output_distance=0.0123,
        verdict=drift_pb2.VERDICT_INCONCLUSIVE,
        reasons=["candidate has 0 labelled rows (100 needed)"],
        quality_difference_low=float("nan"),
        quality_difference_high=float("nan"),
    )  # fmt: skip
    assert format_canary("churn", 1.0, analysis).splitlines() == [
        "churn: candidate 2 against stable 1 over the last 1 h: inconclusive",
        "  version        requests  errors  p99 ms  labelled  accuracy",
        "  1 (stable)     12,000    0.10%   4.2     900       0.9000",
        "  2 (candidate)  800       0.00%   3.5     0         -",
        "  output distance (Jensen-Shannon): 0.0123",
        "  - candidate has 0 labelled rows (100 needed)",
    ]
    passed = drift_pb2.CanaryAnalysis(
        verdict=drift_pb2.VERDICT_PASS,
        evidence_sufficient=True,
        quality_difference_low=-0.01,
        quality_difference_high=0.03,
    )
    lines = format_canary("churn", 0.5, passed).splitlines()
    assert lines[0].endswith("last 0.5 h: pass (the labelled evidence is enough to pass early)")
    assert "  quality difference (candidate - stable): -0.0100 to +0.0300" in lines
