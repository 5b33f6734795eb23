"""`python -m driftloop.gateway`: the gateway as its own process."""

from __future__ import annotations

import logging
import sys

from driftloop.gateway.config import GatewaySettings
from driftloop.gateway.server import GatewayService
from driftloop.kafka.topics import service_kafka
from driftloop.kit.entrypoint import run_main, serve_until_signal
from driftloop.kit.settings import load_settings
from driftloop.kit.startup import waiting_health

log = logging.getLogger("driftloop.gateway")


async def run() -> None:
    settings = load_settings(GatewaySettings)
    async with waiting_health("gateway", settings):
        kafka, bootstrap = await service_kafka()
    await serve_until_signal(GatewayService(settings, kafka, bootstrap), log)


def usage() -> str:
    from driftloop.cli.configuration import service_help  # one listing of settings: the CLI's

    return service_help("gateway")


if __name__ == "__main__":
    sys.exit(run_main("driftloop.gateway", run, usage))
