"""Settings of the shadow service (prefix DRIFTLOOP_SHADOW_)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from driftloop.kit.settings import GrpcServerSettings, Targets

DEFAULT_PORT = 50054


class ShadowSettings(GrpcServerSettings):
    model_config = SettingsConfigDict(
        env_prefix="DRIFTLOOP_SHADOW_", extra="ignore", populate_by_name=True
    )

    port: int = DEFAULT_PORT
    # Inference endpoints, comma-separated; a failing one is skipped within the deadline.
    inference_targets: Targets = Field(default_factory=lambda: ["127.0.0.1:50052"])
    inference_tls_ca_file: Path | None = None
    # One call per shadow version and request, within this deadline.
    call_timeout_s: Annotated[float, Field(gt=0, le=60)] = 1.0
    concurrency: Annotated[int, Field(ge=1, le=10_000)] = 64
    batch: Annotated[int, Field(ge=1, le=100_000)] = 500
    # Behind by more than this, answer only a share of requests (at least min_share).
    max_lag_s: Annotated[float, Field(gt=0)] = 30.0
    min_share: Annotated[float, Field(gt=0, le=1)] = 0.05
    # Every compare_every_s, each shadow version with traffic in the last
    # compare_window_s is compared with live and the comparison stored for Grafana.
    compare_every_s: Annotated[float, Field(gt=0)] = 60.0
    compare_window_s: Annotated[float, Field(ge=60)] = 3600.0
