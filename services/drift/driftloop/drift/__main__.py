"""`python -m driftloop.drift`: the drift service as its own process."""

from __future__ import annotations

import logging
import sys

from driftloop.clickhouse.client import open_clickhouse
from driftloop.drift.config import DriftSettings
from driftloop.drift.server import DriftService
from driftloop.kafka.topics import service_kafka
from driftloop.kit.entrypoint import run_main, serve_until_signal
from driftloop.kit.settings import ClickHouseSettings, load_settings

log = logging.getLogger("driftloop.drift")


async def run() -> None:
    settings = load_settings(DriftSettings)
    kafka, bootstrap = await service_kafka()
    clickhouse = await open_clickhouse(load_settings(ClickHouseSettings))
    try:
        await serve_until_signal(DriftService(settings, kafka, bootstrap, clickhouse), log)
    finally:
        await clickhouse.close()


if __name__ == "__main__":
    sys.exit(run_main("driftloop.drift", run))
