"""`python -m driftloop.retrainer`: the retrainer service as its own process."""

from __future__ import annotations

import asyncio
import logging
import sys

from driftloop.clickhouse.client import open_clickhouse
from driftloop.kafka.topics import ensure_topics
from driftloop.kit.grpc_server import wait_for_signal
from driftloop.kit.logging import configure_logging
from driftloop.kit.settings import (
    ArtifactSettings,
    ClickHouseSettings,
    ConfigError,
    KafkaSettings,
    LoggingSettings,
    load_settings,
)
from driftloop.models.artifacts import LocalArtifactStore
from driftloop.retrainer.config import RetrainerSettings
from driftloop.retrainer.server import RetrainerService

log = logging.getLogger("driftloop.retrainer")


async def run() -> None:
    settings = load_settings(RetrainerSettings)
    kafka = load_settings(KafkaSettings)
    if kafka.bootstrap_servers is None:
        raise ConfigError(
            "DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS: required when a service runs on its own"
        )
    await ensure_topics(kafka, kafka.bootstrap_servers)
    clickhouse = await open_clickhouse(load_settings(ClickHouseSettings))
    artifacts = LocalArtifactStore(load_settings(ArtifactSettings).path)
    service = RetrainerService(settings, kafka, kafka.bootstrap_servers, clickhouse, artifacts)
    try:
        await service.start()
        received = await wait_for_signal()
        log.info("received %s, shutting down", received.name)
    finally:
        await service.stop()
        await clickhouse.close()


def main() -> int:
    try:
        logging_settings = load_settings(LoggingSettings)
        configure_logging(logging_settings.level, logging_settings.format)
        asyncio.run(run())
    except ConfigError as error:
        print(f"driftloop.retrainer: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
