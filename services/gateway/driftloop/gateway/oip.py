"""The Open Inference Protocol v2 gRPC adapter (inference.GRPCInferenceService).

ModelInfer is Predict in another dress: each row of the request goes through the same
PredictionService (the model's routing policy, or its champion by default; fallback to
stable; the prediction log, the shadow mirror, the canary's traffic record), so an OIP
request is routed, logged and drift-watched exactly as Predict is. A batch is routed
row by row, as PredictBatch is.

- `id` is the request id (the gateway assigns one when empty) and is echoed; row i of
  a batch of n > 1 gets `<id>-<i>`, listed in the `request_id` output.
- The request parameter `entity_key` (a string) is the sticky routing key of every row.
- `model_version` must be empty: the routing policy chooses the version. ModelReady
  and ModelMetadata take a version (the served stable version when empty).
Tensor layouts and outputs: tensors.py.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from importlib.metadata import version as package_version
from typing import Any, Protocol

from driftloop.gateway import tensors
from driftloop.gateway.servicer import BATCH_CONCURRENCY
from driftloop.gateway.serving import PredictionService, Served
from driftloop.kit.errors import DriftloopError, InvalidArgument
from driftloop.kit.names import MAX_REQUEST_ID, check_name, check_version
from driftloop.oip.v2 import grpc_predict_v2_pb2 as oip
from driftloop.oip.v2 import grpc_predict_v2_pb2_grpc as oip_grpc
from driftloop.v1 import common_pb2, registry_pb2

ENTITY_KEY = "entity_key"


class VersionRecords(Protocol):
    async def record(self, model: str, version: str) -> registry_pb2.ModelVersion:
        """The registry's record of a version (schema, output kind, flavor)."""
        ...


class VersionCheck(Protocol):
    async def check(self, model: str, version: str) -> None:
        """Raises unless the version serves on the inference endpoints that answer."""
        ...


def row_ids(base: str, batch: int) -> list[str]:
    """The request id of each row: `base` itself for one row, `base-i` in a batch."""
    ids = [base] if batch == 1 else [f"{base}-{i}" for i in range(batch)]
    if len(ids[-1]) > MAX_REQUEST_ID:
        room = MAX_REQUEST_ID - (len(ids[-1]) - len(base))
        raise InvalidArgument("id", f"longer than {room} characters (for a batch of {batch})")
    return ids


def entity_key(request: oip.ModelInferRequest) -> str:
    if ENTITY_KEY not in request.parameters:
        return ""
    parameter = request.parameters[ENTITY_KEY]
    if parameter.WhichOneof("parameter_choice") != "string_param":
        raise InvalidArgument(f"parameters[{ENTITY_KEY}]", "must be a string_param")
    return parameter.string_param


class InferenceServicer(oip_grpc.GRPCInferenceServiceServicer):
    def __init__(
        self,
        serving: PredictionService,
        versions: VersionRecords,
        loader: VersionCheck,
        ready: Callable[[], bool],
        max_batch: int,
    ) -> None:
        self._serving = serving
        self._versions = versions
        self._loader = loader
        self._ready = ready
        self._max_batch = max_batch

    async def ServerLive(
        self, request: oip.ServerLiveRequest, context: Any
    ) -> oip.ServerLiveResponse:
        return oip.ServerLiveResponse(live=True)

    async def ServerReady(
        self, request: oip.ServerReadyRequest, context: Any
    ) -> oip.ServerReadyResponse:
        return oip.ServerReadyResponse(ready=self._ready())

    async def ServerMetadata(
        self, request: oip.ServerMetadataRequest, context: Any
    ) -> oip.ServerMetadataResponse:
        return oip.ServerMetadataResponse(
            name="driftloop-gateway", version=package_version("driftloop-gateway")
        )

    async def ModelReady(
        self, request: oip.ModelReadyRequest, context: Any
    ) -> oip.ModelReadyResponse:
        """Ready when the model is routable (a policy, or a champion) and the version
        (the stable one when not given) serves on inference."""
        check_name("name", request.name, "model name")
        if request.version:
            check_version("version", request.version)
        try:
            version = request.version or (await self._serving.policy(request.name)).stable_version
            await self._loader.check(request.name, version)
        except DriftloopError:
            return oip.ModelReadyResponse(ready=False)
        return oip.ModelReadyResponse(ready=True)

    async def ModelMetadata(
        self, request: oip.ModelMetadataRequest, context: Any
    ) -> oip.ModelMetadataResponse:
        check_name("name", request.name, "model name")
        if request.version:
            check_version("version", request.version)
        version = request.version or (await self._serving.policy(request.name)).stable_version
        record = await self._versions.record(request.name, version)
        return tensors.metadata(
            request.name,
            version,
            record.flavor,
            record.schema,
            record.output_kind,
            list(record.baseline.output_labels.categories),
        )

    async def ModelInfer(
        self, request: oip.ModelInferRequest, context: Any
    ) -> oip.ModelInferResponse:
        model = check_name("model_name", request.model_name, "model name")
        if request.model_version:
            raise InvalidArgument(
                "model_version",
                "leave it empty: the gateway chooses the version by the model's routing policy",
            )
        names = tensors.requested(request)
        key = entity_key(request)
        stable = (await self._serving.policy(model)).stable_version
        schema = (await self._versions.record(model, stable)).schema
        rows = tensors.decode(request, schema)
        if len(rows) > self._max_batch:
            raise InvalidArgument("inputs", f"a batch of {len(rows)} is over {self._max_batch}")
        base = request.id or uuid.uuid4().hex
        limit = asyncio.Semaphore(BATCH_CONCURRENCY)

        async def one(request_id: str, row: common_pb2.Row) -> Served:
            async with limit:
                return await self._serving.predict(
                    model, request_id, key, row, context.time_remaining()
                )

        # Each row is routed and logged on its own, as PredictBatch does.
        served = await asyncio.gather(
            *(one(rid, row) for rid, row in zip(row_ids(base, len(rows)), rows, strict=True))
        )
        response = tensors.encode(served, names)
        response.model_name = model
        response.id = base
        return response
