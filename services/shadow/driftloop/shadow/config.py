"""Settings of the shadow service (prefix DRIFTLOOP_SHADOW_)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from driftloop.kit.settings import (
    ClickHouseSettings,
    GrpcServerSettings,
    KafkaSettings,
    Port,
    Targets,
)
from driftloop.kit.settings_doc import ServiceDoc

DEFAULT_PORT = 50054


class ShadowSettings(GrpcServerSettings):
    model_config = SettingsConfigDict(
        env_prefix="DRIFTLOOP_SHADOW_", extra="ignore", populate_by_name=True
    )

    port: Port = DEFAULT_PORT
    inference_targets: Targets = Field(
        default_factory=lambda: ["127.0.0.1:50052"],
        description="inference endpoints of the shadow service, comma-separated; a failing "
        "one is skipped within the deadline",
    )
    inference_tls_ca_file: Path | None = Field(
        default=None,
        description="CA of the inference endpoints' TLS certificates",
        json_schema_extra={"default_text": "unset: plaintext"},
    )
    call_timeout_s: Annotated[float, Field(gt=0, le=60)] = Field(
        default=1.0,
        description="deadline of one shadow call, one per shadow version and request (a "
        "failure is recorded as the shadow's error, not retried)",
    )
    concurrency: Annotated[int, Field(ge=1, le=10_000)] = Field(
        default=64, description="shadow calls in flight at most"
    )
    batch: Annotated[int, Field(ge=1, le=100_000)] = Field(
        default=500,
        description="mirrored requests per consumer poll (committed after their answers are "
        "acknowledged)",
    )
    max_lag_s: Annotated[float, Field(gt=0)] = Field(
        default=30.0,
        description="behind by more than this, answer only a share of requests (halved for "
        "every doubling of the lag, never below the minimum share), chosen by a hash of the "
        "request id",
    )
    min_share: Annotated[float, Field(gt=0, le=1)] = Field(
        default=0.05, description="the share of requests answered at least, however far behind"
    )
    compare_every_s: Annotated[float, Field(gt=0)] = Field(
        default=60.0,
        description="how often each shadow version with traffic in the comparison window is "
        "compared with live, and the comparisons and A/B reports stored",
    )
    compare_window_s: Annotated[float, Field(ge=60)] = Field(
        default=3600.0, description="the window of those comparisons and A/B reports"
    )


# What `python -m driftloop.shadow --help` and `driftloop settings` list for this service.
SETTINGS_DOC = ServiceDoc(
    "shadow",
    "Shadow service",
    ShadowSettings,
    reads=(KafkaSettings, ClickHouseSettings),
)
