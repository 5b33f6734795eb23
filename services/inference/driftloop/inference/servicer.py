"""The InferenceService gRPC adapter: validate, predict, answer. Errors carry the field."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from prometheus_client import Counter

from driftloop.inference import metrics
from driftloop.inference.host import Hosted, ModelHost
from driftloop.kit.errors import InvalidArgument
from driftloop.models.convert import (
    OUTPUT_KINDS,
    prediction_to_proto,
    row_from_proto,
    schema_to_proto,
)
from driftloop.models.schema import Model, Row
from driftloop.v1 import common_pb2, inference_pb2, inference_pb2_grpc

# Batches larger than this are scored in a worker thread, so the event loop keeps serving.
THREAD_ROWS = 256


def _ref(message: common_pb2.ModelRef, field: str = "model") -> tuple[str, str]:
    if not message.model:
        raise InvalidArgument(f"{field}.model", "the model name is required")
    if not message.version:
        raise InvalidArgument(f"{field}.version", "a version number or an alias is required")
    return message.model, message.version


def _status(hosted: Hosted) -> inference_pb2.ModelStatus:
    state = {
        "loading": inference_pb2.LOAD_STATE_LOADING,
        "ready": inference_pb2.LOAD_STATE_READY,
        "failed": inference_pb2.LOAD_STATE_FAILED,
    }[hosted.state]
    status = inference_pb2.ModelStatus(
        model=common_pb2.ModelRef(model=hosted.model_name, version=hosted.version),
        state=state,
        error=hosted.error.message if hosted.error else "",
    )
    if hosted.spec is not None:
        status.artifact_sha256 = hosted.spec.artifact_sha256
        status.schema.CopyFrom(schema_to_proto(hosted.spec.schema))
        status.output_kind = OUTPUT_KINDS[hosted.spec.output_kind]
    return status


class InferenceServicer(inference_pb2_grpc.InferenceServiceServicer):
    def __init__(self, host: ModelHost, max_batch_rows: int) -> None:
        self._host = host
        self._max_rows = max_batch_rows
        self._rows_counters: dict[str, Counter] = {}

    def _rows_counter(self, model: str) -> Counter:
        """The model's rows counter, looked up by label once (a label lookup per request
        costs three times the increment). Only served models get here, so few names."""
        counter = self._rows_counters.get(model)
        if counter is None:
            counter = self._rows_counters[model] = metrics.ROWS.labels(model)
        return counter

    async def _one(
        self, request: inference_pb2.InferenceRequest, path: str = "row"
    ) -> inference_pb2.InferenceResponse:
        name, ref = _ref(request.model)
        hosted, model = await self._host.model(name, ref)
        row = row_from_proto(request.row)
        model.schema.validate_row(row, path)
        started = time.perf_counter_ns()
        if hosted.coalescer is None:  # an inline model: microseconds, on the loop
            (prediction,) = model.predict([row])
        else:
            prediction = await hosted.coalescer.predict(row)
        latency_us = (time.perf_counter_ns() - started) // 1000
        self._rows_counter(name).inc()
        # Fields set in place: a message passed to a constructor is copied into it.
        response = inference_pb2.InferenceResponse(
            request_id=request.request_id, latency_us=latency_us
        )
        response.model.model = name
        response.model.version = hosted.version
        prediction_to_proto(prediction, model.output_kind, response.output)
        return response

    async def Predict(
        self, request: inference_pb2.InferenceRequest, context: Any
    ) -> inference_pb2.InferenceResponse:
        return await self._one(request)

    async def PredictBatch(
        self, request: inference_pb2.InferenceBatchRequest, context: Any
    ) -> inference_pb2.InferenceBatchResponse:
        name, ref = _ref(request.model)
        if request.request_ids and len(request.request_ids) != len(request.rows):
            raise InvalidArgument(
                "request_ids", f"{len(request.request_ids)} ids for {len(request.rows)} rows"
            )
        hosted, model = await self._host.model(name, ref)
        rows: list[Row] = [row_from_proto(row) for row in request.rows]
        model.schema.validate(rows, self._max_rows)
        started = time.perf_counter_ns()
        predictions = await _predict(model, rows)
        latency_us = (time.perf_counter_ns() - started) // 1000
        self._rows_counter(name).inc(len(rows))
        response = inference_pb2.InferenceBatchResponse(latency_us=latency_us)
        response.model.model = name
        response.model.version = hosted.version
        outputs = response.outputs
        for prediction in predictions:
            prediction_to_proto(prediction, model.output_kind, outputs.add())
        return response

    async def PredictStream(
        self, requests: AsyncIterator[inference_pb2.InferenceRequest], context: Any
    ) -> AsyncIterator[inference_pb2.InferenceResponse]:
        index = 0
        async for request in requests:
            yield await self._one(request, f"requests[{index}].row")
            index += 1

    async def GetModelStatus(
        self, request: inference_pb2.ModelStatusRequest, context: Any
    ) -> inference_pb2.ModelStatusResponse:
        return inference_pb2.ModelStatusResponse(
            models=[_status(h) for h in self._host.statuses(request.model)]
        )

    async def LoadModel(
        self, request: inference_pb2.LoadModelRequest, context: Any
    ) -> inference_pb2.ModelStatus:
        name, ref = _ref(request.model)
        return _status(await self._host.load(name, ref))

    async def UnloadModel(
        self, request: inference_pb2.UnloadModelRequest, context: Any
    ) -> inference_pb2.ModelStatus:
        name, ref = _ref(request.model)
        return _status(self._host.unload(name, await self._host.resolve(name, ref)))


async def _predict(model: Model, rows: list[Row]) -> list[Any]:
    if not model.inline or len(rows) > THREAD_ROWS:
        return await asyncio.to_thread(model.predict, rows)
    return model.predict(rows)
