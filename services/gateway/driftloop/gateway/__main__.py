"""`python -m driftloop.gateway`: the gateway as its own process."""

from __future__ import annotations

import asyncio
import logging
import sys

from driftloop.gateway.config import GatewaySettings
from driftloop.gateway.server import GatewayService
from driftloop.kafka.topics import ensure_topics
from driftloop.kit.grpc_server import wait_for_signal
from driftloop.kit.logging import configure_logging
from driftloop.kit.settings import ConfigError, KafkaSettings, LoggingSettings, load_settings

log = logging.getLogger("driftloop.gateway")


async def run() -> None:
    settings = load_settings(GatewaySettings)
    kafka = load_settings(KafkaSettings)
    if kafka.bootstrap_servers is None:
        raise ConfigError(
            "DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS: required when a service runs on its own"
        )
    await ensure_topics(kafka, kafka.bootstrap_servers)
    service = GatewayService(settings, kafka, kafka.bootstrap_servers)
    try:
        await service.start()
        received = await wait_for_signal()
        log.info("received %s, shutting down", received.name)
    finally:
        await service.stop()


def main() -> int:
    try:
        logging_settings = load_settings(LoggingSettings)
        configure_logging(logging_settings.level, logging_settings.format)
        asyncio.run(run())
    except ConfigError as error:
        print(f"driftloop.gateway: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
