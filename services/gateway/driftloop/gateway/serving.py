"""The predict path: route, call inference, fall back to stable, log, mirror, record.

A model without a written policy is routed by its default one, the champion
(champions.py).

Nothing here waits on Kafka: the prediction log and the shadow mirror are bounded
buffers that drop (and count) rather than block. A candidate, canary or A/B variant that
fails for a server-side reason is recorded as a failure of that version and the request
is answered by the stable version instead, within the same deadline, so a bad rollout is
seen by the analysis, not by the application.

Every failure of a version is logged too, as a PredictionEvent of that version with
`error` set to the gRPC status name and no output (same request id, variant, features,
time and latency as a success would have): the drift service's canary analysis counts
errors from the log, and a version that fails before the stable one answers would
otherwise leave no trace there. A request answered by the fallback therefore has two
events, the candidate's failure and the stable version's answer. INVALID_ARGUMENT is the
caller's mistake, not the model's: it is neither logged nor counted as a failure, by the
log and the gateway's own TrafficRecorder alike.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass

import grpc

from driftloop.client.coalescing import InferenceCoalescer
from driftloop.gateway import metrics, routing
from driftloop.gateway.buffer import EventBuffer
from driftloop.gateway.canary import TrafficRecorder
from driftloop.gateway.champions import ServedPolicies, no_policy
from driftloop.gateway.wire import with_features
from driftloop.kit.errors import DriftloopError, ErrorCode, FailedPrecondition, InvalidArgument
from driftloop.kit.grpc_client import upstream_error
from driftloop.kit.names import MAX_KEY_CHARS, MAX_REQUEST_ID
from driftloop.v1 import common_pb2, events_pb2, inference_pb2

log = logging.getLogger(__name__)

MAX_LATENCY_US = 2**32 - 1  # the event's uint32


@dataclass(frozen=True)
class Served:
    request_id: str
    version: str
    variant: str
    output: common_pb2.Output


class PredictionService:
    def __init__(
        self,
        inference: InferenceCoalescer,
        prediction_log: EventBuffer,
        shadow_mirror: EventBuffer,
        recorder: TrafficRecorder,
        timeout_s: float,
        policies: ServedPolicies,
    ) -> None:
        self._policies = policies
        self._inference = inference
        self._prediction_log = prediction_log
        self._mirror = shadow_mirror
        self._recorder = recorder
        self._timeout = timeout_s

    async def predict(
        self,
        model: str,
        request_id: str,
        entity_key: str,
        row: common_pb2.Row,
        budget_s: float | None,
    ) -> Served:
        if len(request_id) > MAX_REQUEST_ID:
            raise InvalidArgument("request_id", f"longer than {MAX_REQUEST_ID} characters")
        if len(entity_key) > MAX_KEY_CHARS:
            raise InvalidArgument("entity_key", f"longer than {MAX_KEY_CHARS} characters")
        policy = await self.policy(model)
        request_id = request_id or uuid.uuid4().hex
        chosen = routing.route(policy, entity_key, request_id)
        budget = min(self._timeout, budget_s) if budget_s else self._timeout
        deadline = time.monotonic() + budget
        request = inference_pb2.InferenceRequest(
            model=common_pb2.ModelRef(model=model, version=chosen.version),
            request_id=request_id,
            row=row,
        )
        try:
            response, latency_ms = await self._attempt(request, chosen, entity_key, deadline)
        except DriftloopError as error:
            if chosen.version == policy.stable_version or error.code == ErrorCode.INVALID_ARGUMENT:
                raise
            metrics.FALLBACKS.labels(model, chosen.variant).inc()
            log.warning(
                "%s v%s failed (%s); answered by stable v%s",
                model,
                chosen.version,
                error.code.value,
                policy.stable_version,
            )
            chosen = routing.Route(policy.stable_version, routing.STABLE)
            request.model.version = chosen.version
            response, latency_ms = await self._attempt(request, chosen, entity_key, deadline)
        self._recorder.record(model, chosen.version, True, latency_ms, response.output.value)
        metrics.REQUESTS.labels(model, chosen.variant).inc()
        self._log_prediction(policy, request, chosen, response, entity_key, latency_ms)
        return Served(
            request_id, response.model.version or chosen.version, chosen.variant, response.output
        )

    async def policy(self, model: str) -> events_pb2.RoutingPolicy:
        """The model's written policy, else its default (the champion); FailedPrecondition
        naming the commands that fix it when it has neither."""
        policy = await self._policies.policy(model)
        if policy is None:
            raise FailedPrecondition(no_policy(model))
        return policy

    async def _attempt(
        self,
        request: inference_pb2.InferenceRequest,
        chosen: routing.Route,
        entity_key: str,
        deadline: float,
    ) -> tuple[inference_pb2.InferenceResponse, float]:
        """One call to the chosen version: the answer and its latency, or the failure,
        recorded and logged as that version's (the caller's own mistakes excepted)."""
        started = time.perf_counter()
        try:
            response = await self._call(request, deadline)
        except DriftloopError as error:
            if error.code != ErrorCode.INVALID_ARGUMENT:
                latency_ms = _ms(started)
                model = request.model.model
                self._recorder.record(model, chosen.version, False, latency_ms, 0.0)
                event = self._event(request, chosen, entity_key, latency_ms, error.code.value)
                self._prediction_log.offer(
                    request.request_id, with_features(event, request.row.SerializeToString())
                )
            raise
        return response, _ms(started)

    async def _call(
        self, request: inference_pb2.InferenceRequest, deadline: float
    ) -> inference_pb2.InferenceResponse:
        try:
            return await self._inference.predict(request, deadline - time.monotonic())
        except grpc.aio.AioRpcError as error:
            raise upstream_error(error) from None

    def _log_prediction(
        self,
        policy: events_pb2.RoutingPolicy,
        request: inference_pb2.InferenceRequest,
        chosen: routing.Route,
        response: inference_pb2.InferenceResponse,
        entity_key: str,
        latency_ms: float,
    ) -> None:
        event = self._event(request, chosen, entity_key, latency_ms)
        event.output.CopyFrom(response.output)
        row = request.row.SerializeToString()  # once, for the log and the mirror (wire.py)
        self._prediction_log.offer(request.request_id, with_features(event, row))
        shadows = routing.shadow_versions(policy, request.request_id)
        if shadows:
            mirror = events_pb2.ShadowRequest(
                request_id=request.request_id,
                model=request.model.model,
                entity_key=entity_key,
                live=common_pb2.ModelRef(model=request.model.model, version=chosen.version),
                live_output=response.output,
                live_latency_us=event.latency_us,
                shadow_versions=shadows,
            )
            mirror.time.CopyFrom(event.time)
            self._mirror.offer(request.request_id, with_features(mirror, row))

    @staticmethod
    def _event(
        request: inference_pb2.InferenceRequest,
        chosen: routing.Route,
        entity_key: str,
        latency_ms: float,
        error: str = "",
    ) -> events_pb2.PredictionEvent:
        """The log record of one call to one version (no output, no features yet)."""
        event = events_pb2.PredictionEvent(
            request_id=request.request_id,
            model=request.model.model,
            version=chosen.version,
            role=common_pb2.ROLE_LIVE,
            variant=chosen.variant,
            entity_key=entity_key,
            latency_us=min(int(latency_ms * 1000), MAX_LATENCY_US),
            error=error,
        )
        # Microseconds, as GetCurrentTime gives (by way of a datetime, 5x slower).
        event.time.FromMicroseconds(time.time_ns() // 1000)
        return event


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0
