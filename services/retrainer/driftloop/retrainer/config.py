"""Settings of the retrainer service (prefix DRIFTLOOP_RETRAINER_)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from driftloop.kit.settings import GrpcServerSettings

DEFAULT_PORT = 50055


class RetrainerSettings(GrpcServerSettings):
    model_config = SettingsConfigDict(
        env_prefix="DRIFTLOOP_RETRAINER_", extra="ignore", populate_by_name=True
    )

    port: int = DEFAULT_PORT
