"""Settings of the retrainer service (prefix DRIFTLOOP_RETRAINER_)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from driftloop.kit.settings import GrpcServerSettings

DEFAULT_PORT = 50055


class RetrainerSettings(GrpcServerSettings):
    model_config = SettingsConfigDict(
        env_prefix="DRIFTLOOP_RETRAINER_", extra="ignore", populate_by_name=True
    )

    port: int = DEFAULT_PORT
    max_artifact_bytes: Annotated[int, Field(ge=1024)] = 512 * 1024 * 1024
    # Continuous training: where rollouts are requested, and how often the periodic
    # triggers (schedule, performance, new data) are checked.
    gateway_target: str = "127.0.0.1:50051"
    gateway_tls_ca_file: Path | None = None
    gateway_timeout_s: Annotated[float, Field(gt=0, le=600)] = 60.0
    check_every_s: Annotated[float, Field(gt=0)] = 30.0
    # Off: the service hosts the registry only (no triggers, no runs).
    training: bool = True
