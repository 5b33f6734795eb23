"""`python -m driftloop.gateway`: the gateway as its own process."""

from __future__ import annotations

import logging
import os
import sys

from driftloop.gateway.config import SETTINGS_DOC, GatewaySettings
from driftloop.gateway.server import GatewayService
from driftloop.kafka.topics import service_kafka
from driftloop.kit.entrypoint import run_main, serve_until_signal
from driftloop.kit.settings import load_settings
from driftloop.kit.settings_doc import service_help
from driftloop.kit.startup import waiting_health

log = logging.getLogger("driftloop.gateway")


async def run() -> None:
    settings = load_settings(GatewaySettings)
    async with waiting_health("gateway", settings):
        kafka, bootstrap = await service_kafka()
    await serve_until_signal(GatewayService(settings, kafka, bootstrap), log)


def usage() -> str:
    return service_help(SETTINGS_DOC, os.environ)


if __name__ == "__main__":
    sys.exit(run_main("driftloop.gateway", run, usage))
