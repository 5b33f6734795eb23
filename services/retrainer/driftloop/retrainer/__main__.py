"""`python -m driftloop.retrainer`: the retrainer service as its own process."""

from __future__ import annotations

import logging
import os
import sys
from contextlib import AsyncExitStack

from driftloop.clickhouse.client import service_clickhouse
from driftloop.kafka.topics import service_kafka
from driftloop.kit.entrypoint import run_main, serve_until_signal
from driftloop.kit.settings import (
    ArtifactSettings,
    ClickHouseSettings,
    load_settings,
)
from driftloop.kit.settings_doc import service_help
from driftloop.kit.startup import waiting_health
from driftloop.models.artifacts import LocalArtifactStore
from driftloop.retrainer.config import SETTINGS_DOC, RetrainerSettings
from driftloop.retrainer.server import RetrainerService

log = logging.getLogger("driftloop.retrainer")


async def run() -> None:
    settings = load_settings(RetrainerSettings)
    clickhouse_settings = load_settings(ClickHouseSettings)
    artifacts = LocalArtifactStore(load_settings(ArtifactSettings).path)
    async with AsyncExitStack() as stack:
        async with waiting_health("retrainer", settings):
            clickhouse = await service_clickhouse(clickhouse_settings)
            stack.push_async_callback(clickhouse.close)
            kafka, bootstrap = await service_kafka()
        service = RetrainerService(settings, kafka, bootstrap, clickhouse, artifacts)
        await serve_until_signal(service, log)


def usage() -> str:
    return service_help(SETTINGS_DOC, os.environ)


if __name__ == "__main__":
    sys.exit(run_main("driftloop.retrainer", run, usage))
