"""`python -m driftloop.inference`: the inference service as its own process."""

from __future__ import annotations

import logging
import os
import sys

from driftloop.inference.config import SETTINGS_DOC, InferenceSettings
from driftloop.inference.server import InferenceService
from driftloop.kafka.topics import wait_for_broker
from driftloop.kit.entrypoint import run_main, serve_until_signal
from driftloop.kit.settings import ArtifactSettings, KafkaSettings, load_settings
from driftloop.kit.settings_doc import service_help
from driftloop.kit.startup import wait_for_service, waiting_health
from driftloop.models.artifacts import LocalArtifactStore

log = logging.getLogger("driftloop.inference")


async def run() -> None:
    settings = load_settings(InferenceSettings)
    kafka = load_settings(KafkaSettings)
    async with waiting_health("inference", settings):
        if kafka.bootstrap_servers is None:
            log.warning("no DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS: alias moves are seen only by TTL")
        else:
            await wait_for_broker(kafka, kafka.bootstrap_servers)
        await wait_for_service(
            "the model registry",
            settings,
            "registry_target",
            tls_ca_file=settings.registry_tls_ca_file,
        )
    artifacts = LocalArtifactStore(load_settings(ArtifactSettings).path)
    await serve_until_signal(
        InferenceService(settings, artifacts, kafka, kafka.bootstrap_servers), log
    )


def usage() -> str:
    return service_help(SETTINGS_DOC, os.environ)


if __name__ == "__main__":
    sys.exit(run_main("driftloop.inference", run, usage))
