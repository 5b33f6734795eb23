"""`python -m driftloop.gateway`: the gateway as its own process."""

from __future__ import annotations

import logging
import sys

from driftloop.gateway.config import GatewaySettings
from driftloop.gateway.server import GatewayService
from driftloop.kafka.topics import ensure_topics
from driftloop.kit.entrypoint import run_main, serve_until_signal
from driftloop.kit.settings import ConfigError, KafkaSettings, load_settings

log = logging.getLogger("driftloop.gateway")


async def run() -> None:
    settings = load_settings(GatewaySettings)
    kafka = load_settings(KafkaSettings)
    if kafka.bootstrap_servers is None:
        raise ConfigError(
            "DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS: required when a service runs on its own"
        )
    await ensure_topics(kafka, kafka.bootstrap_servers)
    await serve_until_signal(GatewayService(settings, kafka, kafka.bootstrap_servers), log)


if __name__ == "__main__":
    sys.exit(run_main("driftloop.gateway", run))
