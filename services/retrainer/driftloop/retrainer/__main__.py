"""`python -m driftloop.retrainer`: the retrainer service as its own process."""

from __future__ import annotations

import logging
import sys

from driftloop.clickhouse.client import open_clickhouse
from driftloop.kafka.topics import service_kafka
from driftloop.kit.entrypoint import run_main, serve_until_signal
from driftloop.kit.settings import (
    ArtifactSettings,
    ClickHouseSettings,
    load_settings,
)
from driftloop.models.artifacts import LocalArtifactStore
from driftloop.retrainer.config import RetrainerSettings
from driftloop.retrainer.server import RetrainerService

log = logging.getLogger("driftloop.retrainer")


async def run() -> None:
    settings = load_settings(RetrainerSettings)
    kafka, bootstrap = await service_kafka()
    clickhouse = await open_clickhouse(load_settings(ClickHouseSettings))
    artifacts = LocalArtifactStore(load_settings(ArtifactSettings).path)
    try:
        service = RetrainerService(settings, kafka, bootstrap, clickhouse, artifacts)
        await serve_until_signal(service, log)
    finally:
        await clickhouse.close()


if __name__ == "__main__":
    sys.exit(run_main("driftloop.retrainer", run))
