"""The DriftService gRPC adapter: protobuf in, evaluator / store / canary analysis, protobuf out."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from typing import Any

from driftloop.drift.baselines import BaselineSource
from driftloop.drift.canary import CanaryAnalysis, CanaryResult, VariantStats
from driftloop.drift.evaluator import Evaluator
from driftloop.drift.history import History, HistoryReader
from driftloop.drift.model_events import to_proto as model_event_to_proto
from driftloop.drift.report import Report, StreamResult
from driftloop.drift.store import DriftStore
from driftloop.drift.windows import Window
from driftloop.kit.errors import InvalidArgument
from driftloop.kit.names import check_name, check_version, check_version_ref
from driftloop.kit.times import stamp, to_datetime
from driftloop.models.convert import baseline_to_proto
from driftloop.v1 import common_pb2, drift_pb2, drift_pb2_grpc, events_pb2, registry_pb2

MAX_ALERTS = 1000
# AnalyzeCanary without a window looks at the last hour.
DEFAULT_CANARY_WINDOW = dt.timedelta(hours=1)
# GetModelHistory without a window looks at the last day.
DEFAULT_HISTORY_WINDOW = dt.timedelta(days=1)
_VERDICTS = {
    "inconclusive": drift_pb2.VERDICT_INCONCLUSIVE,
    "pass": drift_pb2.VERDICT_PASS,
    "fail": drift_pb2.VERDICT_FAIL,
}


def _time_window(
    window: common_pb2.TimeWindow, field: str
) -> tuple[dt.datetime | None, dt.datetime | None]:
    start = to_datetime(f"{field}.start", window.start) if window.HasField("start") else None
    end = to_datetime(f"{field}.end", window.end) if window.HasField("end") else None
    if start is not None and end is not None and start >= end:
        raise InvalidArgument(field, "start must be before end")
    return start, end


def _model_ref(ref: common_pb2.ModelRef) -> tuple[str, str]:
    check_name("model.model", ref.model, "model name")
    check_version_ref("model.version", ref.version)
    return ref.model, ref.version


def _score(result: StreamResult) -> events_pb2.FeatureScore:
    return events_pb2.FeatureScore(
        feature=result.stream,
        test="psi",
        score=result.psi,
        p_value=result.p_value,
        drifted=result.drifted,
    )


def report_to_proto(report: Report) -> drift_pb2.DriftReport:
    message = drift_pb2.DriftReport(
        model=common_pb2.ModelRef(model=report.model, version=report.version),
        window=common_pb2.TimeWindow(start=stamp(report.start), end=stamp(report.end)),
        rows=report.rows,
        labelled_rows=report.labelled,
        performance=[
            registry_pb2.Metric(name=name, value=value)
            for name, value in report.performance.items()
        ],
        data_drift=report.data_drift,
        prediction_drift=report.prediction_drift,
        concept_drift=report.concept_drift,
        drifted_share=report.drifted_share,
        baseline_missing=report.baseline_missing,
        root_causes=[
            drift_pb2.RootCause(
                feature=cause.feature, drift=cause.drift, performance_link=cause.performance_link
            )
            for cause in report.root_causes
        ],
    )
    for result in report.features:
        message.features.extend(
            events_pb2.FeatureScore(
                feature=score.stream,
                test=score.test,
                score=score.value,
                p_value=score.p_value,
                drifted=score.drifted,
            )
            for score in result.scores()
        )
    if report.prediction is not None:
        message.prediction.CopyFrom(_score(report.prediction))
    return message


def _variant(stats: VariantStats) -> drift_pb2.VariantStats:
    return drift_pb2.VariantStats(
        version=stats.version,
        requests=stats.requests,
        error_rate=stats.error_rate,
        p99_latency_ms=stats.p99_latency_ms,
        labelled=stats.labelled,
        accuracy=stats.accuracy,
    )


def canary_to_proto(result: CanaryResult) -> drift_pb2.CanaryAnalysis:
    low, high = result.quality_difference
    return drift_pb2.CanaryAnalysis(
        stable=_variant(result.stable),
        candidate=_variant(result.candidate),
        output_distance=result.output_distance,
        verdict=_VERDICTS[result.verdict],
        reasons=result.reasons,
        evidence_sufficient=result.evidence_sufficient,
        quality_difference_low=low,
        quality_difference_high=high,
    )


def history_to_proto(history: History) -> drift_pb2.ModelHistory:
    return drift_pb2.ModelHistory(
        model=history.model,
        window=common_pb2.TimeWindow(start=stamp(history.start), end=stamp(history.end)),
        bucket_s=history.bucket_s,
        traffic=[
            drift_pb2.TrafficBucket(
                start=stamp(p.start), version=p.version, requests=p.requests, errors=p.errors
            )
            for p in history.traffic
        ],
        quality=[
            drift_pb2.QualityBucket(
                start=stamp(p.start),
                version=p.version,
                answered=p.answered,
                labelled=p.labelled,
                metric=p.metric,
                value=p.value,
            )
            for p in history.quality
        ],
        drift=[
            drift_pb2.DriftPoint(
                start=stamp(p.start),
                version=p.version,
                stream=p.stream,
                psi=p.psi,
                drifted=p.drifted,
            )
            for p in history.drift
        ],
        events=[model_event_to_proto(event) for event in history.events],
    )


class DriftServicer(drift_pb2_grpc.DriftServiceServicer):
    def __init__(
        self,
        evaluator: Evaluator,
        baselines: BaselineSource,
        store: DriftStore,
        canary: CanaryAnalysis,
        history: HistoryReader,
        default_last_n: int,
    ) -> None:
        self._evaluator = evaluator
        self._baselines = baselines
        self._store = store
        self._canary = canary
        self._history = history
        self._default_last_n = default_last_n

    async def GetDriftReport(
        self, request: drift_pb2.DriftReportRequest, context: Any
    ) -> drift_pb2.DriftReport:
        model, version = _model_ref(request.model)
        which = request.WhichOneof("window")
        if which == "time_window":
            start, end = _time_window(request.time_window, "time_window")
            if start is None or end is None:
                raise InvalidArgument("time_window", "needs both start and end")
            window = Window(start=start, end=end)
        elif which == "last_n":
            if request.last_n == 0:
                raise InvalidArgument("last_n", "must be at least 1")
            window = Window(last_n=request.last_n)
        else:
            window = Window(last_n=self._default_last_n)
        report = await self._evaluator.report(model, version, window)
        return report_to_proto(report)

    async def GetBaseline(
        self, request: drift_pb2.GetBaselineRequest, context: Any
    ) -> registry_pb2.Baseline:
        model, version = _model_ref(request.model)
        info = await self._baselines.get(model, version)
        return baseline_to_proto(info.baseline)

    async def ListAlerts(
        self, request: drift_pb2.ListAlertsRequest, context: Any
    ) -> drift_pb2.ListAlertsResponse:
        check_name("model", request.model, "model name")
        if request.limit > MAX_ALERTS:
            raise InvalidArgument("limit", f"at most {MAX_ALERTS}")
        start, end = _time_window(request.window, "window")
        alerts = await self._store.alerts(request.model, start, end, request.limit or 100)
        return drift_pb2.ListAlertsResponse(alerts=alerts)

    async def AnalyzeCanary(
        self, request: drift_pb2.CanaryAnalysisRequest, context: Any
    ) -> drift_pb2.CanaryAnalysis:
        check_name("model", request.model, "model name")
        check_version("stable_version", request.stable_version)
        check_version("candidate_version", request.candidate_version)
        if request.stable_version == request.candidate_version:
            raise InvalidArgument("candidate_version", "must differ from stable_version")
        start, end = _time_window(request.window, "window")
        end = end or dt.datetime.now(dt.UTC)
        start = start or end - DEFAULT_CANARY_WINDOW
        limits = self._canary.limits
        for field, value in (
            ("max_error_rate_increase", request.max_error_rate_increase),
            ("max_output_distance", request.max_output_distance),
            ("max_accuracy_drop", request.max_accuracy_drop),
        ):
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise InvalidArgument(field, f"{value} is not in [0, 1] (0: the default)")
        limits = dataclasses.replace(
            limits,
            max_error_rate_increase=request.max_error_rate_increase
            or limits.max_error_rate_increase,
            max_output_distance=request.max_output_distance or limits.max_output_distance,
            max_quality_drop=request.max_accuracy_drop or limits.max_quality_drop,
        )
        result = await self._canary.analyse(
            request.model, request.stable_version, request.candidate_version, start, end, limits
        )
        return canary_to_proto(result)

    async def GetModelHistory(
        self, request: drift_pb2.ModelHistoryRequest, context: Any
    ) -> drift_pb2.ModelHistory:
        check_name("model", request.model, "model name")
        start, end = _time_window(request.window, "window")
        end = end or dt.datetime.now(dt.UTC)
        start = start or end - DEFAULT_HISTORY_WINDOW
        if start >= end:
            raise InvalidArgument("window.start", "must be before the window's end")
        history = await self._history.history(request.model, start, end, request.bucket_s)
        return history_to_proto(history)
