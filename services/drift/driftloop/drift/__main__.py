"""`python -m driftloop.drift`: the drift service as its own process."""

from __future__ import annotations

import logging
import os
import sys
from contextlib import AsyncExitStack

from driftloop.clickhouse.client import service_clickhouse
from driftloop.drift.config import SETTINGS_DOC, DriftSettings
from driftloop.drift.server import DriftService
from driftloop.kafka.topics import service_kafka
from driftloop.kit.entrypoint import run_main, serve_until_signal
from driftloop.kit.settings import ClickHouseSettings, load_settings
from driftloop.kit.settings_doc import service_help
from driftloop.kit.startup import waiting_health

log = logging.getLogger("driftloop.drift")


async def run() -> None:
    settings = load_settings(DriftSettings)
    clickhouse_settings = load_settings(ClickHouseSettings)
    async with AsyncExitStack() as stack:
        async with waiting_health("drift", settings):
            clickhouse = await service_clickhouse(clickhouse_settings)
            stack.push_async_callback(clickhouse.close)
            kafka, bootstrap = await service_kafka()
        await serve_until_signal(DriftService(settings, kafka, bootstrap, clickhouse), log)


def usage() -> str:
    return service_help(SETTINGS_DOC, os.environ)


if __name__ == "__main__":
    sys.exit(run_main("driftloop.drift", run, usage))
