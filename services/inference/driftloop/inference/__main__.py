"""`python -m driftloop.inference`: the inference service as its own process."""

from __future__ import annotations

import logging
import sys

from driftloop.inference.config import InferenceSettings
from driftloop.inference.server import InferenceService
from driftloop.kit.entrypoint import run_main, serve_until_signal
from driftloop.kit.settings import ArtifactSettings, KafkaSettings, load_settings
from driftloop.models.artifacts import LocalArtifactStore

log = logging.getLogger("driftloop.inference")


async def run() -> None:
    settings = load_settings(InferenceSettings)
    kafka = load_settings(KafkaSettings)
    if kafka.bootstrap_servers is None:
        log.warning("no DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS: alias moves are seen only by TTL")
    artifacts = LocalArtifactStore(load_settings(ArtifactSettings).path)
    await serve_until_signal(
        InferenceService(settings, artifacts, kafka, kafka.bootstrap_servers), log
    )


if __name__ == "__main__":
    sys.exit(run_main("driftloop.inference", run))
