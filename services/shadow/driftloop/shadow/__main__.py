"""`python -m driftloop.shadow`: the shadow service as its own process."""

from __future__ import annotations

import logging
import sys

from driftloop.clickhouse.client import open_clickhouse
from driftloop.kafka.topics import service_kafka
from driftloop.kit.entrypoint import run_main, serve_until_signal
from driftloop.kit.settings import ClickHouseSettings, load_settings
from driftloop.shadow.config import ShadowSettings
from driftloop.shadow.server import ShadowService

log = logging.getLogger("driftloop.shadow")


async def run() -> None:
    settings = load_settings(ShadowSettings)
    kafka, bootstrap = await service_kafka()
    clickhouse = await open_clickhouse(load_settings(ClickHouseSettings))
    try:
        await serve_until_signal(ShadowService(settings, kafka, bootstrap, clickhouse), log)
    finally:
        await clickhouse.close()


if __name__ == "__main__":
    sys.exit(run_main("driftloop.shadow", run))
