"""`python -m driftloop.shadow`: the shadow service as its own process."""

from __future__ import annotations

import logging
import os
import sys
from contextlib import AsyncExitStack

from driftloop.clickhouse.client import service_clickhouse
from driftloop.kafka.topics import service_kafka
from driftloop.kit.entrypoint import run_main, serve_until_signal
from driftloop.kit.settings import ClickHouseSettings, load_settings
from driftloop.kit.settings_doc import service_help
from driftloop.kit.startup import waiting_health
from driftloop.shadow.config import SETTINGS_DOC, ShadowSettings
from driftloop.shadow.server import ShadowService

log = logging.getLogger("driftloop.shadow")


async def run() -> None:
    settings = load_settings(ShadowSettings)
    clickhouse_settings = load_settings(ClickHouseSettings)
    async with AsyncExitStack() as stack:
        async with waiting_health("shadow", settings):
            clickhouse = await service_clickhouse(clickhouse_settings)
            stack.push_async_callback(clickhouse.close)
            kafka, bootstrap = await service_kafka()
        await serve_until_signal(ShadowService(settings, kafka, bootstrap, clickhouse), log)


def usage() -> str:
    return service_help(SETTINGS_DOC, os.environ)


if __name__ == "__main__":
    sys.exit(run_main("driftloop.shadow", run, usage))
