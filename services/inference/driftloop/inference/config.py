"""Settings of the inference service (prefix DRIFTLOOP_INFERENCE_)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from driftloop.kit.settings import ArtifactSettings, GrpcServerSettings, KafkaSettings, Port
from driftloop.kit.settings_doc import ServiceDoc

DEFAULT_PORT = 50052


class InferenceSettings(GrpcServerSettings):
    model_config = SettingsConfigDict(
        env_prefix="DRIFTLOOP_INFERENCE_", extra="ignore", populate_by_name=True
    )

    port: Port = DEFAULT_PORT
    registry_target: str = Field(
        default="127.0.0.1:50055",
        description="where inference finds the registry (the retrainer service) the versions "
        "are looked up in",
    )
    registry_tls_ca_file: Path | None = Field(
        default=None,
        description="CA of the registry's TLS certificate",
        json_schema_extra={"default_text": "unset: plaintext"},
    )
    registry_timeout_s: Annotated[float, Field(gt=0, le=60)] = Field(
        default=5.0, description="deadline of registry calls"
    )
    preload: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="versions loaded at start-up, `model:version` or `model:alias`, "
        "comma-separated (`churn:champion,fraud:3`); health is SERVING once they are",
    )
    preload_retry_s: Annotated[float, Field(gt=0, le=300)] = Field(
        default=5.0, description="retry interval of a preload that failed"
    )
    max_loaded: Annotated[int, Field(ge=1, le=1000)] = Field(
        default=16,
        description="versions kept loaded (the least recently used beyond it are unloaded)",
    )
    max_batch_rows: Annotated[int, Field(ge=1, le=100_000)] = Field(
        default=1000, description="largest PredictBatch, rows"
    )
    load_wait_s: Annotated[float, Field(ge=0, le=120)] = Field(
        default=10.0,
        description="how long a request waits for its version to finish loading before UNAVAILABLE",
    )

    @field_validator("preload", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("preload")
    @classmethod
    def _model_refs(cls, value: list[str]) -> list[str]:
        for item in value:
            model, _, version = item.partition(":")
            if not model or not version:
                raise ValueError(f"{item!r} is not model:version or model:alias")
        return value


# What `python -m driftloop.inference --help` and `driftloop settings` list for this service.
SETTINGS_DOC = ServiceDoc(
    "inference",
    "Inference",
    InferenceSettings,
    reads=(KafkaSettings, ArtifactSettings),
)
