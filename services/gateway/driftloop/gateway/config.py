"""Settings of the gateway (prefix DRIFTLOOP_GATEWAY_)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from driftloop.kit.settings import GrpcServerSettings

DEFAULT_PORT = 50051


class GatewaySettings(GrpcServerSettings):
    model_config = SettingsConfigDict(
        env_prefix="DRIFTLOOP_GATEWAY_", extra="ignore", populate_by_name=True
    )

    port: int = DEFAULT_PORT
    # Inference endpoints, comma-separated; a failing one is skipped and the call retried.
    inference_targets: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["127.0.0.1:50052"]
    )
    inference_tls_ca_file: Path | None = None
    registry_target: str = "127.0.0.1:50055"
    # The drift service, whose canary analysis (accuracy on labelled traffic, from the
    # prediction log) can fail a canary step; empty: the gateway's own analysis only.
    drift_target: str = ""
    # The shadow service, whose comparisons let a rollout go "shadow first" (the canary
    # starts only on shadow evidence); empty: shadow-first rollouts are refused.
    shadow_target: str = ""
    # Deadline of one inference call (a caller's shorter deadline wins).
    request_timeout_s: Annotated[float, Field(gt=0, le=60)] = 1.0
    max_batch_requests: Annotated[int, Field(ge=1, le=10_000)] = 1000
    # The prediction log and shadow mirror buffers: records beyond them are dropped, counted.
    log_buffer: Annotated[int, Field(ge=100)] = 50_000
    shadow_buffer: Annotated[int, Field(ge=100)] = 10_000
    # How often the controller (one replica) looks at the running rollouts.
    controller_interval_s: Annotated[float, Field(gt=0, le=60)] = 1.0
    # Start a rollout of every newly registered version of a model that has a policy.
    auto_rollout: Literal["off", "canary", "blue-green"] = "off"
    canary_min_requests: Annotated[int, Field(ge=1)] = 200
    canary_min_duration_s: Annotated[int, Field(ge=0)] = 60
    canary_max_error_rate_increase: Annotated[float, Field(ge=0, le=1)] = 0.02
    canary_max_p99_latency_ratio: Annotated[float, Field(ge=1)] = 2.0
    canary_max_output_distance: Annotated[float, Field(ge=0, le=1)] = 0.3
    # The last canary step waits until the drift service counts this many labelled rows of
    # the candidate (0: no wait); needs drift_target.
    canary_min_labelled_before_promotion: Annotated[int, Field(ge=0)] = 0
    blue_green_hold_s: Annotated[int, Field(ge=0)] = 300

    @model_validator(mode="after")
    def _labelled_needs_drift(self) -> GatewaySettings:
        if self.canary_min_labelled_before_promotion and not self.drift_target:
            raise ValueError(
                "canary_min_labelled_before_promotion needs drift_target: only the drift "
                "service counts labelled rows"
            )
        return self

    @field_validator("inference_targets", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("inference_targets")
    @classmethod
    def _not_empty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one host:port")
        return value
