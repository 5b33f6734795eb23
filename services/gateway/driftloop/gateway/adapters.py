"""The gateway's adapters to the registry (champion alias), inference (loading) and the
drift service (canary quality)."""

from __future__ import annotations

import datetime as dt
import logging

import grpc

from driftloop.client.inference_pool import Endpoint, InferencePool
from driftloop.client.registry import RegistryClient
from driftloop.gateway.canary import QualityOpinion
from driftloop.gateway.champions import CHAMPION
from driftloop.gateway.rollouts import ShadowEvidence
from driftloop.kafka.producer import EventProducer
from driftloop.kit.errors import ErrorCode, FailedPrecondition, Unavailable, Upstream
from driftloop.kit.grpc_client import admin_metadata, upstream_error
from driftloop.v1 import (
    common_pb2,
    drift_pb2,
    drift_pb2_grpc,
    events_pb2,
    inference_pb2,
    registry_pb2,
    shadow_pb2,
    shadow_pb2_grpc,
)

log = logging.getLogger(__name__)


class DriftQuality:
    """The drift service's AnalyzeCanary as the controller's QualityCheck. An unreachable
    drift service is logged and fails nothing (the local analysis still runs), but gives
    no evidence either: no early pass, and no promotion that waits for labelled rows."""

    def __init__(self, channel: grpc.aio.Channel, timeout_s: float = 10.0) -> None:
        self._stub = drift_pb2_grpc.DriftServiceStub(channel)
        self._timeout = timeout_s

    async def opinion(
        self,
        model: str,
        stable: str,
        candidate: str,
        since: dt.datetime,
        plan: events_pb2.CanaryPlan,
    ) -> QualityOpinion:
        window = common_pb2.TimeWindow()
        window.start.FromDatetime(since)
        window.end.FromDatetime(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1))
        try:
            analysis = await self._stub.AnalyzeCanary(
                drift_pb2.CanaryAnalysisRequest(
                    model=model,
                    stable_version=stable,
                    candidate_version=candidate,
                    window=window,
                    max_error_rate_increase=plan.max_error_rate_increase,
                    max_output_distance=plan.max_output_distance,
                    max_accuracy_drop=plan.max_accuracy_drop,
                ),
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as error:
            log.warning(
                "the drift service's canary analysis failed; using the local one only",
                extra={"model": model, "code": error.code().name, "details": error.details()},
            )
            return QualityOpinion(available=False)
        failed = analysis.verdict == drift_pb2.VERDICT_FAIL
        return QualityOpinion(
            failures=tuple(f"drift service: {reason}" for reason in analysis.reasons)
            if failed
            else (),
            evidence_sufficient=analysis.evidence_sufficient and not failed,
            candidate_labelled=analysis.candidate.labelled,
            stable_labelled=analysis.stable.labelled,
            quality_difference_low=analysis.quality_difference_low,
        )


class ShadowComparisons:
    """The shadow service's comparison as the controller's shadow-first evidence. An
    unreachable shadow service is logged; the gate then waits (None)."""

    def __init__(self, channel: grpc.aio.Channel, timeout_s: float = 10.0) -> None:
        self._stub = shadow_pb2_grpc.ShadowServiceStub(channel)
        self._timeout = timeout_s

    async def evidence(self, model: str, version: str, since: dt.datetime) -> ShadowEvidence | None:
        window = common_pb2.TimeWindow()
        window.start.FromDatetime(since)
        window.end.FromDatetime(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1))
        try:
            comparison = await self._stub.GetShadowComparison(
                shadow_pb2.ShadowComparisonRequest(
                    model=model, shadow_version=version, window=window
                ),
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as error:
            log.warning(
                "the shadow service's comparison failed; the shadow gate waits",
                extra={"model": model, "code": error.code().name, "details": error.details()},
            )
            return None
        return ShadowEvidence(
            compared=comparison.compared,
            labelled=comparison.labelled,
            worse=comparison.verdict == "shadow worse",
            summary=(
                f"{comparison.verdict}: {comparison.metric or 'quality'} "
                f"{comparison.shadow_metric:.4f} vs live {comparison.live_metric:.4f} on "
                f"{comparison.labelled} labelled of {comparison.compared} compared requests "
                f"(effect {comparison.effect:+.4f}, p {comparison.p_value:.3g}), agreement "
                f"{comparison.agreement:.3f}"
            ),
        )


class RegistryChampions:
    """The champion alias in the registry: read from its history, moved compare-and-set."""

    def __init__(self, registry: RegistryClient) -> None:
        self._registry = registry

    async def current(self, model: str) -> str:
        moves = await self._registry.alias_history(model, CHAMPION)
        return moves[-1].version if moves else ""

    async def move(self, model: str, version: str, expected: str, reason: str) -> None:
        await self._registry.set_alias(model, CHAMPION, version, expected, reason)


class RegistryVersions:
    """Whether the registry has a version (the routing follower's check), and its record
    (the OIP's schema). Versions never disappear or change, so a version once found is
    not asked about again."""

    def __init__(self, registry: RegistryClient) -> None:
        self._registry = registry
        self._known: set[tuple[str, str]] = set()
        self._records: dict[tuple[str, str], registry_pb2.ModelVersion] = {}

    async def record(self, model: str, version: str) -> registry_pb2.ModelVersion:
        """The version's record, without its drift baseline but for the output labels."""
        record = self._records.get((model, version))
        if record is not None:
            return record
        record = await self._registry.get(model, version)
        labels = registry_pb2.Baseline(output_labels=record.baseline.output_labels)
        record.baseline.CopyFrom(labels)  # the samples and bins are large, and unused here
        self._records[(model, version)] = record
        self._known.add((model, version))
        return record

    async def exists(self, model: str, version: str) -> bool | None:
        if (model, version) in self._known:
            return True
        try:
            await self._registry.get(model, version)
        except Upstream as error:
            if error.code == ErrorCode.NOT_FOUND:
                return False
            log.warning(
                "cannot ask the registry whether %s v%s exists",
                model,
                version,
                extra={"code": error.code.value},
            )
            return None
        self._known.add((model, version))
        return True


class InferenceLoader:
    """Loads a version on the inference endpoints. A version an endpoint failed to load
    (unknown, or a bad artifact) is FailedPrecondition; one still loading, or an endpoint
    that does not answer, is Unavailable."""

    def __init__(self, pool: InferencePool, admin_token: str, timeout_s: float = 60.0) -> None:
        self._pool = pool
        self._metadata = admin_metadata(admin_token)
        self._timeout = timeout_s

    async def load(self, model: str, version: str) -> None:
        """Every endpoint must report the version READY (before traffic moves to it)."""
        for endpoint in self._pool.endpoints:
            await self._load_on(endpoint, model, version)

    async def check(self, model: str, version: str) -> None:
        """The endpoints that answer report the version READY, and at least one answers
        (an endpoint that is down is skipped, as the serving path skips it)."""
        unreachable: list[str] = []
        for endpoint in self._pool.endpoints:
            try:
                await self._load_on(endpoint, model, version)
            except Unavailable as error:
                unreachable.append(error.message)
        if len(unreachable) == len(self._pool.endpoints):
            raise Unavailable("; ".join(unreachable))

    async def _load_on(self, endpoint: Endpoint, model: str, version: str) -> None:
        request = inference_pb2.LoadModelRequest(
            model=common_pb2.ModelRef(model=model, version=version)
        )
        try:
            status = await endpoint.stub.LoadModel(
                request, timeout=self._timeout, metadata=self._metadata
            )
        except grpc.aio.AioRpcError as error:
            failure = upstream_error(error, f"loading {model} v{version} on {endpoint.target}")
            if error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise Unavailable(failure.message) from None
            raise failure from None
        if status.state == inference_pb2.LOAD_STATE_FAILED:
            raise FailedPrecondition(
                f"{model} v{version} failed to load on {endpoint.target}: {status.error}"
            )
        if status.state != inference_pb2.LOAD_STATE_READY:
            raise Unavailable(
                f"{model} v{version} is not ready on {endpoint.target}: {status.error}"
            )


class KafkaEvents:
    def __init__(self, producer: EventProducer, topic: str) -> None:
        self._producer = producer
        self._topic = topic

    async def publish(self, event: events_pb2.ModelEvent) -> None:
        await self._producer.publish(self._topic, event.model, event)
