"""Settings of the retrainer service (prefix DRIFTLOOP_RETRAINER_)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from driftloop.kit.settings import (
    ArtifactSettings,
    ClickHouseSettings,
    GrpcServerSettings,
    KafkaSettings,
    Port,
)
from driftloop.kit.settings_doc import ADMIN, ServiceDoc
from driftloop.models.registration import LineageSettings

DEFAULT_PORT = 50055


class RetrainerSettings(GrpcServerSettings):
    model_config = SettingsConfigDict(
        env_prefix="DRIFTLOOP_RETRAINER_", extra="ignore", populate_by_name=True
    )

    port: Port = DEFAULT_PORT
    max_artifact_bytes: Annotated[int, Field(ge=1024)] = Field(
        default=512 * 1024 * 1024, description="largest artifact upload, bytes"
    )
    training: bool = Field(
        default=True,
        description="`false`: the retrainer hosts the registry only (no triggers, no runs)",
    )
    gateway_target: str = Field(
        default="127.0.0.1:50051",
        description="where the retrainer asks for the rollout of a retrained version",
    )
    gateway_tls_ca_file: Path | None = Field(
        default=None,
        description="CA of the gateway's TLS certificate",
        json_schema_extra={"default_text": "unset: plaintext"},
    )
    gateway_timeout_s: Annotated[float, Field(gt=0, le=600)] = Field(
        default=60.0,
        description="deadline of the rollout request (the gateway loads the version first)",
    )
    check_every_s: Annotated[float, Field(gt=0)] = Field(
        default=30.0,
        description="how often the schedule, performance and new-data triggers are checked",
    )


# What `python -m driftloop.retrainer --help` and `driftloop settings` list for this service.
SETTINGS_DOC = ServiceDoc(
    "retrainer",
    "Retrainer (and the registry)",
    RetrainerSettings,
    reads=(KafkaSettings, ClickHouseSettings, ArtifactSettings),
    placed=((ADMIN, LineageSettings),),
)
