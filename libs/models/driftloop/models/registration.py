"""What a registration records: the trained model's lineage as a ModelVersion message."""

from __future__ import annotations

import platform
import subprocess
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from driftloop.models.convert import OUTPUT_KINDS, baseline_to_proto, schema_to_proto
from driftloop.models.linear import FLAVOR
from driftloop.models.training import TrainedModel
from driftloop.v1 import common_pb2, registry_pb2

PACKAGES = ("numpy", "pyarrow", "river", "protobuf", "driftloop-models")


def environment() -> dict[str, str]:
    """Python and the versions of the packages that shape a trained model."""
    found = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return found


class LineageSettings(BaseSettings):
    """What a trained model's lineage records about the code that trained it."""

    model_config = SettingsConfigDict(
        env_prefix="DRIFTLOOP_", extra="ignore", env_ignore_empty=True
    )

    code_version: str | None = Field(
        default=None,
        description="code version recorded with a trained model (a retraining run's or a "
        "client registration's)",
        json_schema_extra={
            "default_text": "`git:<commit>` of the working directory (`-dirty` with "
            "uncommitted changes), else `driftloop-models:<version>`"
        },
    )


def code_version(where: Path | None = None) -> str:
    """DRIFTLOOP_CODE_VERSION, else the git commit of the working tree, else the package."""
    configured = LineageSettings().code_version
    if configured is not None:
        return configured
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        return f"git:{commit}{'-dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        return f"driftloop-models:{metadata.version('driftloop-models')}"


def version_record(
    trained: TrainedModel,
    *,
    model: str,
    artifact_sha256: str,
    source: str,
    created_by: str = "",
    parent_version: str = "",
    tags: Mapping[str, str] | None = None,
    window: common_pb2.TimeWindow | None = None,
) -> registry_pb2.ModelVersion:
    """The registration request for a model trained by `train_linear`."""
    record = registry_pb2.ModelVersion(
        model=model,
        flavor=FLAVOR,
        artifact_sha256=artifact_sha256,
        schema=schema_to_proto(trained.model.schema),
        output_kind=OUTPUT_KINDS[trained.model.output_kind],
        metrics=[registry_pb2.Metric(name=k, value=v) for k, v in sorted(trained.metrics.items())],
        hyperparameters=trained.spec.hyperparameters() | {"target": trained.spec.target},
        seed=trained.spec.seed,
        data=registry_pb2.DataSnapshot(
            source=source,
            row_count=trained.training_rows + trained.holdout_rows,
            content_sha256=trained.data_sha256,
        ),
        code_version=code_version(),
        environment=environment(),
        created_by=created_by,
        tags=dict(tags or {}),
        parent_version=parent_version,
        baseline=baseline_to_proto(trained.baseline),
    )
    if window is not None:
        record.data.window.CopyFrom(window)
    return record
