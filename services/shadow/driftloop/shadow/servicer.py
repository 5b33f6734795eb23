"""The ShadowService gRPC adapter: protobuf in, the reports core, protobuf out."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from driftloop.kit.errors import InvalidArgument
from driftloop.kit.names import check_name, check_version
from driftloop.kit.times import stamp, to_datetime
from driftloop.shadow.mirror import MirrorState
from driftloop.shadow.reports import (
    DEFAULT_MIN_EFFECT,
    DEFAULT_WINDOW,
    ABResult,
    Reports,
    ShadowResult,
)
from driftloop.v1 import common_pb2, shadow_pb2, shadow_pb2_grpc


def window_of(
    window: common_pb2.TimeWindow, field: str = "window"
) -> tuple[dt.datetime, dt.datetime]:
    end = to_datetime(f"{field}.end", window.end) if window.HasField("end") else None
    start = to_datetime(f"{field}.start", window.start) if window.HasField("start") else None
    end = end or dt.datetime.now(dt.UTC)
    start = start or end - DEFAULT_WINDOW
    if start >= end:
        raise InvalidArgument(field, "start must be before end")
    return start, end


def _window(start: dt.datetime, end: dt.datetime) -> common_pb2.TimeWindow:
    return common_pb2.TimeWindow(start=stamp(start), end=stamp(end))


def comparison_to_proto(result: ShadowResult, state: MirrorState) -> shadow_pb2.ShadowComparison:
    c = result.comparison
    return shadow_pb2.ShadowComparison(
        model=result.model,
        live_version=",".join(result.live_versions),
        shadow_version=result.shadow_version,
        window=_window(result.start, result.end),
        compared=c.compared,
        agreement=c.agreement,
        agreement_low=c.agreement_ci[0],
        agreement_high=c.agreement_ci[1],
        mean_diff=c.diff_mean,
        mean_abs_diff=c.diff_mean_abs,
        diff_p05=c.diff_p05,
        diff_p50=c.diff_p50,
        diff_p95=c.diff_p95,
        live_p50_latency_ms=c.live_p50_ms,
        live_p99_latency_ms=c.live_p99_ms,
        shadow_p50_latency_ms=c.shadow_p50_ms,
        shadow_p99_latency_ms=c.shadow_p99_ms,
        live_error_rate=c.live_error_rate,
        shadow_error_rate=c.shadow_error_rate,
        labelled=c.labelled,
        metric=c.metric,
        live_metric=c.live_quality,
        shadow_metric=c.shadow_quality,
        test=c.test,
        effect=c.effect,
        effect_low=c.effect_ci[0],
        effect_high=c.effect_ci[1],
        p_value=c.p_value,
        verdict=c.verdict,
        segments=[
            shadow_pb2.SegmentDisagreement(
                feature=s.feature, value=s.value, compared=s.compared, disagreement=s.disagreement
            )
            for s in c.segments
        ],
        skipped=state.skipped,
        skipped_share=state.skipped_share,
        lag_s=state.lag_s,
    )


def ab_to_proto(result: ABResult) -> shadow_pb2.ABReport:
    report = result.report
    return shadow_pb2.ABReport(
        model=result.model,
        window=_window(result.start, result.end),
        metric=report.metric,
        variants=[
            shadow_pb2.VariantResult(
                variant=v.variant,
                version=",".join(result.versions.get(v.variant, [])),
                requests=v.requests,
                units=v.units,
                error_rate=v.error_rate,
                p50_latency_ms=v.latency_p50_ms,
                p99_latency_ms=v.latency_p99_ms,
                output_mean=v.output_mean,
                output_distance=v.output_distance,
                labelled=v.labelled,
                metric=v.quality,
                metric_low=v.quality_ci[0],
                metric_high=v.quality_ci[1],
            )
            for v in report.variants
        ],
        comparisons=[
            shadow_pb2.VariantComparison(
                variant=c.variant,
                control=c.control,
                difference=c.difference,
                ci_low=c.ci[0],
                ci_high=c.ci[1],
                p_value=c.p_value,
                always_valid_p=c.sequential_p_value,
                cs_low=c.sequential_ci[0],
                cs_high=c.sequential_ci[1],
                required_labelled=c.required_per_variant or 0,
                design_effect=c.design_effect,
                decision=c.decision,
            )
            for c in report.comparisons
        ],
    )


class ShadowServicer(shadow_pb2_grpc.ShadowServiceServicer):
    def __init__(self, reports: Reports, state: MirrorState) -> None:
        self._reports = reports
        self._state = state

    async def GetShadowComparison(
        self, request: shadow_pb2.ShadowComparisonRequest, context: Any
    ) -> shadow_pb2.ShadowComparison:
        check_name("model", request.model, "model name")
        check_version("shadow_version", request.shadow_version)
        start, end = window_of(request.window)
        result = await self._reports.shadow(request.model, request.shadow_version, start, end)
        return comparison_to_proto(result, self._state)

    async def GetABReport(
        self, request: shadow_pb2.ABReportRequest, context: Any
    ) -> shadow_pb2.ABReport:
        check_name("model", request.model, "model name")
        if request.control:
            check_name("control", request.control, "variant name")
        effect = request.min_effect or DEFAULT_MIN_EFFECT
        if not (math.isfinite(effect) and 0 < effect < 1):
            raise InvalidArgument("min_effect", f"{effect} is not in (0, 1)")
        start, end = window_of(request.window)
        result = await self._reports.ab(request.model, start, end, effect, request.control)
        return ab_to_proto(result)

    async def GetShadowStatus(
        self, request: shadow_pb2.ShadowStatusRequest, context: Any
    ) -> shadow_pb2.ShadowStatus:
        state = self._state
        return shadow_pb2.ShadowStatus(
            answered=state.answered,
            failed=state.failed,
            skipped=state.skipped,
            skipped_share=state.skipped_share,
            lag_s=state.lag_s,
        )
