"""`python -m driftloop.retrainer`: the retrainer service as its own process."""

from __future__ import annotations

import logging
import sys

from driftloop.clickhouse.client import open_clickhouse
from driftloop.kafka.topics import ensure_topics
from driftloop.kit.entrypoint import run_main, serve_until_signal
from driftloop.kit.settings import (
    ArtifactSettings,
    ClickHouseSettings,
    ConfigError,
    KafkaSettings,
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
    try:
        service = RetrainerService(settings, kafka, kafka.bootstrap_servers, clickhouse, artifacts)
        await serve_until_signal(service, log)
    finally:
        await clickhouse.close()


if __name__ == "__main__":
    sys.exit(run_main("driftloop.retrainer", run))
