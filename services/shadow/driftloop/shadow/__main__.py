"""`python -m driftloop.shadow`: the shadow service as its own process."""

from __future__ import annotations

import logging
import sys

from driftloop.clickhouse.client import open_clickhouse
from driftloop.kafka.topics import ensure_topics
from driftloop.kit.entrypoint import run_main, serve_until_signal
from driftloop.kit.settings import ClickHouseSettings, ConfigError, KafkaSettings, load_settings
from driftloop.shadow.config import ShadowSettings
from driftloop.shadow.server import ShadowService

log = logging.getLogger("driftloop.shadow")


async def run() -> None:
    settings = load_settings(ShadowSettings)
    kafka = load_settings(KafkaSettings)
    if kafka.bootstrap_servers is None:
        raise ConfigError(
            "DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS: required when a service runs on its own"
        )
    await ensure_topics(kafka, kafka.bootstrap_servers)
    clickhouse = await open_clickhouse(load_settings(ClickHouseSettings))
    try:
        await serve_until_signal(
            ShadowService(settings, kafka, kafka.bootstrap_servers, clickhouse), log
        )
    finally:
        await clickhouse.close()


if __name__ == "__main__":
    sys.exit(run_main("driftloop.shadow", run))
