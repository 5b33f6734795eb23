"""The shadow service's adapters: inference (the shadow versions) and Kafka (their answers)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import grpc

from driftloop.client.inference_pool import InferencePool
from driftloop.kafka.producer import EventProducer
from driftloop.kit.errors import DriftloopError
from driftloop.shadow.mirror import ShadowCallFailed
from driftloop.v1 import common_pb2, events_pb2, inference_pb2


class InferenceShadowModels:
    def __init__(self, pool: InferencePool) -> None:
        self._pool = pool

    async def predict(
        self, model: str, version: str, request_id: str, features: common_pb2.Row, timeout_s: float
    ) -> common_pb2.Output:
        request = inference_pb2.InferenceRequest(
            model=common_pb2.ModelRef(model=model, version=version),
            request_id=request_id,
            row=features,
        )
        try:
            response = await self._pool.predict(request, timeout_s)
        except grpc.aio.AioRpcError as error:
            raise ShadowCallFailed(error.code().name, error.details() or "") from None
        except DriftloopError as error:  # every endpoint unavailable
            raise ShadowCallFailed(error.code.value, error.message) from None
        return response.output


class KafkaShadowEvents:
    def __init__(self, producer: EventProducer, topic: str) -> None:
        self._producer = producer
        self._topic = topic

    async def publish(self, events: Sequence[events_pb2.PredictionEvent]) -> None:
        deliveries = [
            await self._producer.enqueue(self._topic, event.request_id, event) for event in events
        ]
        await asyncio.gather(*deliveries)
