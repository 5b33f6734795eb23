"""Settings of the gateway (prefix DRIFTLOOP_GATEWAY_)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from driftloop.kit.settings import GrpcServerSettings, KafkaSettings, Port
from driftloop.kit.settings_doc import ServiceDoc

DEFAULT_PORT = 50051


class GatewaySettings(GrpcServerSettings):
    model_config = SettingsConfigDict(
        env_prefix="DRIFTLOOP_GATEWAY_", extra="ignore", populate_by_name=True
    )

    port: Port = DEFAULT_PORT
    inference_targets: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["127.0.0.1:50052"],
        description="inference endpoints of the gateway, comma-separated; a failing one is "
        "skipped and the call retried on the next",
    )
    inference_tls_ca_file: Path | None = Field(
        default=None,
        description="CA of the inference endpoints' TLS certificates",
        json_schema_extra={"default_text": "unset: plaintext"},
    )
    registry_target: str = Field(
        default="127.0.0.1:50055",
        description="the registry, where the gateway checks versions and moves the champion "
        "alias (plaintext: no TLS setting yet)",
    )
    drift_target: str = Field(
        default="",
        description="the drift service, whose canary analysis (error rate and accuracy on "
        "labelled traffic, always-valid sequential tests) can fail a canary step or let it "
        "advance early (plaintext: no TLS setting yet); without it every canary event says "
        "there is no labelled quality check, and an auto-rollout gateway warns at start",
        json_schema_extra={"default_text": "empty: off"},
    )
    shadow_target: str = Field(
        default="",
        description='the shadow service, whose comparisons let a canary start "shadow '
        'first" (only on shadow evidence that the candidate is not worse; plaintext: no TLS '
        "setting yet); without it shadow-first rollouts are refused",
        json_schema_extra={"default_text": "empty: off"},
    )
    request_timeout_s: Annotated[float, Field(gt=0, le=60)] = Field(
        default=1.0, description="deadline of one inference call (a caller's shorter deadline wins)"
    )
    inference_calls_in_flight: Annotated[int, Field(ge=0, le=1000)] = Field(
        default=0,
        description="0: every request is a Predict call of its own; N: calls to inference "
        "in flight per model version before the requests that arrive wait and go together "
        "as one PredictBatch (a lone request never waits; at least the number of inference "
        "replicas). Off by default: a version failing some rows is then charged, in "
        "latency, for the batches its failures refused",
    )
    max_batch_requests: Annotated[int, Field(ge=1, le=10_000)] = Field(
        default=1000, description="largest PredictBatch, requests"
    )
    log_buffer: Annotated[int, Field(ge=100)] = Field(
        default=50_000,
        description="prediction-log records held for Kafka; beyond it they are dropped (counted)",
    )
    shadow_buffer: Annotated[int, Field(ge=100)] = Field(
        default=10_000,
        description="mirrored shadow requests held for Kafka; beyond it they are dropped (counted)",
    )
    controller_interval_s: Annotated[float, Field(gt=0, le=60)] = Field(
        default=1.0,
        description="how often the rollout controller (one replica) looks at the running rollouts",
    )
    auto_rollout: Literal["off", "canary", "blue-green"] = Field(
        default="off",
        description="`canary` or `blue-green`: start a rollout of every newly registered "
        "version of a model that has a routing policy",
    )
    canary_min_requests: Annotated[int, Field(ge=1)] = Field(
        default=200, description="default candidate requests per canary step"
    )
    canary_min_duration_s: Annotated[int, Field(ge=0)] = Field(
        default=60, description="default duration of a canary step, seconds"
    )
    canary_max_error_rate_increase: Annotated[float, Field(ge=0, le=1)] = Field(
        default=0.02, description="candidate error rate above stable's that fails a step"
    )
    canary_max_p99_latency_ratio: Annotated[float, Field(ge=1)] = Field(
        default=2.0,
        description="a candidate slower than this times stable's at p99 (+10 ms) and at p50 "
        "(+5 ms) fails a step",
    )
    canary_max_output_distance: Annotated[float, Field(ge=0, le=1)] = Field(
        default=0.3, description="Jensen-Shannon distance of the outputs that fails a step"
    )
    canary_min_labelled_before_promotion: Annotated[int, Field(ge=0)] = Field(
        default=0,
        description="the last canary step waits until the drift service counts this many "
        "labelled candidate rows (0: no wait; needs the drift target)",
    )
    blue_green_hold_s: Annotated[int, Field(ge=0)] = Field(
        default=300,
        description="default blue-green hold period, seconds, the previous version kept "
        "for an instant rollback (0: switch for good at the next controller round)",
    )

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


# What `python -m driftloop.gateway --help` and `driftloop settings` list for this service.
SETTINGS_DOC = ServiceDoc(
    "gateway",
    "Gateway",
    GatewaySettings,
    reads=(KafkaSettings,),
)
