"""`python -m driftloop.inference`: the inference service as its own process."""

from __future__ import annotations

import asyncio
import logging
import sys

from driftloop.inference.config import InferenceSettings
from driftloop.inference.server import InferenceService
from driftloop.kit.grpc_server import wait_for_signal
from driftloop.kit.logging import configure_logging
from driftloop.kit.settings import (
    ArtifactSettings,
    ConfigError,
    KafkaSettings,
    LoggingSettings,
    load_settings,
)
from driftloop.models.artifacts import LocalArtifactStore

log = logging.getLogger("driftloop.inference")


async def run() -> None:
    settings = load_settings(InferenceSettings)
    kafka = load_settings(KafkaSettings)
    if kafka.bootstrap_servers is None:
        log.warning("no DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS: alias moves are seen only by TTL")
    artifacts = LocalArtifactStore(load_settings(ArtifactSettings).path)
    service = InferenceService(settings, artifacts, kafka, kafka.bootstrap_servers)
    try:
        await service.start()
        received = await wait_for_signal()
        log.info("received %s, shutting down", received.name)
    finally:
        await service.stop()


def main() -> int:
    try:
        logging_settings = load_settings(LoggingSettings)
        configure_logging(logging_settings.level, logging_settings.format)
        asyncio.run(run())
    except ConfigError as error:
        print(f"driftloop.inference: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
