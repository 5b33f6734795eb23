"""Settings of the retrainer service (prefix DRIFTLOOP_RETRAINER_)."""

from __future__ import annotations

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
