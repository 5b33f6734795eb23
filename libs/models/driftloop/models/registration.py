"""What a registration records: the trained model's lineage as a ModelVersion message."""

from __future__ import annotations

import platform
import subprocess
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from driftloop.kit.errors import InvalidArgument
from driftloop.models.convert import OUTPUT_KINDS, baseline_to_proto, schema_to_proto
from driftloop.models.linear import FLAVOR
from driftloop.models.mlflow_model import is_mlflow_directory, read_mlflow_model
from driftloop.models.python_flavor import FLAVOR as PYTHON
from driftloop.models.reference import (
    LocalArtifact,
    Reference,
    check_options,
    load_local,
    prepare,
    resolve_schema,
)
from driftloop.models.schema import OutputKind, Schema
from driftloop.models.table import read_table
from driftloop.models.training import TrainedModel
from driftloop.v1 import common_pb2, registry_pb2

PACKAGES = ("numpy", "pyarrow", "river", "protobuf", "driftloop-models")


def environment(packages: Sequence[str] = PACKAGES) -> dict[str, str]:
    """Python and the versions of the packages that shape a trained model."""
    found = {"python": platform.python_version()}
    for package in packages:
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


FOREIGN_PACKAGES = ("numpy", "pyarrow", "scikit-learn", "skops", "onnxruntime", "driftloop-models")


def artifact_record(
    reference: Reference,
    *,
    model: str,
    flavor: str,
    artifact_sha256: str,
    source: str,
    entry_point: str = "",
    pickle_trusted: bool = False,
    created_by: str = "",
    parent_version: str = "",
    tags: Mapping[str, str] | None = None,
) -> registry_pb2.ModelVersion:
    """The registration request for a model trained elsewhere: no hyperparameters or
    training code to record; the environment is the one that checked it loads here."""
    record = registry_pb2.ModelVersion(
        model=model,
        flavor=flavor,
        artifact_sha256=artifact_sha256,
        schema=schema_to_proto(reference.schema),
        output_kind=OUTPUT_KINDS[reference.output_kind],
        metrics=[
            registry_pb2.Metric(name=k, value=v) for k, v in sorted(reference.metrics.items())
        ],
        entry_point=entry_point,
        pickle_trusted=pickle_trusted,
        environment=environment(FOREIGN_PACKAGES),
        created_by=created_by,
        tags=dict(tags or {}),
        parent_version=parent_version,
    )
    if reference.baseline is not None:
        record.baseline.CopyFrom(baseline_to_proto(reference.baseline))
        record.data.CopyFrom(
            registry_pb2.DataSnapshot(
                source=source, row_count=reference.rows, content_sha256=reference.data_sha256
            )
        )
    return record


def artifact_registration(
    artifact: Path,
    *,
    model: str,
    flavor: str | None = None,
    schema: Schema | None = None,
    output_kind: OutputKind | None = None,
    reference_data: Path | None = None,
    holdout: Path | None = None,
    target: str | None = None,
    trust_pickle: bool = False,
    entry_point: str = "",
    created_by: str = "",
    parent_version: str = "",
    tags: Mapping[str, str] | None = None,
) -> tuple[bytes, registry_pb2.ModelVersion]:
    """The artifact's bytes and its registration request (blocking: reads files, loads the
    model, predicts the reference data). `artifact` is a model file, or an MLflow model
    directory (its flavor, model file and signature read from its MLmodel)."""
    tags = dict(tags or {})
    if is_mlflow_directory(artifact):
        found = read_mlflow_model(artifact)
        if flavor is not None and flavor != found.flavor:
            raise InvalidArgument(
                "flavor", f"the MLflow model in {artifact} is {found.flavor}, not {flavor}"
            )
        flavor, artifact, schema = found.flavor, found.artifact, schema or found.schema
        tags = found.tags | tags
    if flavor is None:
        raise InvalidArgument("flavor", "required for a model file (sklearn, onnx, river, python)")
    if not artifact.is_file():
        raise InvalidArgument("artifact", f"no such file: {artifact}")
    check_options(reference_data is not None, holdout is not None, target)
    reference = read_table(reference_data) if reference_data is not None else None
    held = read_table(holdout) if holdout is not None else None
    local = LocalArtifact(artifact)
    resolved = resolve_schema(schema, reference, target)
    if flavor == PYTHON and reference is None and output_kind is not None:
        # Its module need only import where it is served: with nothing to predict here,
        # it is not loaded here.
        prepared = Reference(resolved, output_kind, None, {}, 0, "")
    else:
        loaded = load_local(
            flavor,
            local,
            resolved,
            output_kind,
            entry_point=entry_point,
            pickle_trusted=trust_pickle,
        )
        prepared = prepare(loaded, reference, held, target)
    record = artifact_record(
        prepared,
        model=model,
        flavor=flavor,
        artifact_sha256=local.sha256,
        source=str(reference_data.resolve()) if reference_data is not None else "",
        entry_point=entry_point,
        pickle_trusted=trust_pickle,
        created_by=created_by,
        parent_version=parent_version,
        tags=tags,
    )
    return local.data, record
