"""Model events onto the model-events topic (keyed by model, acknowledged by the broker)."""

from __future__ import annotations

from driftloop.kafka.producer import EventProducer
from driftloop.kit.errors import Unavailable
from driftloop.v1 import events_pb2


class KafkaModelEvents:
    def __init__(self, producer: EventProducer, topic: str) -> None:
        self._producer = producer
        self._topic = topic

    async def publish(self, event: events_pb2.ModelEvent) -> None:
        try:
            await self._producer.publish(self._topic, event.model, event)
        except Exception as error:  # any producer failure means the same to a caller
            raise Unavailable(
                f"the change to {event.model} was recorded, but announcing it on {self._topic} "
                f"failed ({type(error).__name__}); consumers will not see it until it is re-sent"
            ) from error
