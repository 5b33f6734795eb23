"""Loading a model version from the artifact store, whatever its flavor."""

from __future__ import annotations

from dataclasses import dataclass

from driftloop.kit.errors import FailedPrecondition
from driftloop.models import linear, onnx_flavor, python_flavor, river_flavor, sklearn_flavor
from driftloop.models.artifacts import ArtifactSource
from driftloop.models.schema import Model, OutputKind, Schema

FLAVORS = (
    linear.FLAVOR,
    sklearn_flavor.FLAVOR,
    onnx_flavor.FLAVOR,
    river_flavor.FLAVOR,
    python_flavor.FLAVOR,
)


@dataclass(frozen=True)
class VersionSpec:
    """What the registry records about a version that loading needs."""

    model: str
    version: str
    flavor: str
    artifact_sha256: str
    schema: Schema
    output_kind: OutputKind
    entry_point: str = ""
    pickle_trusted: bool = False


def load_model(spec: VersionSpec, store: ArtifactSource) -> Model:
    """Verify the artifact's SHA-256 and build the model; never loads a failed artifact."""
    if spec.flavor == linear.FLAVOR:
        model = linear.LinearModel.from_bytes(store.get(spec.artifact_sha256))
        if model.schema.features != spec.schema.features or model.output_kind != spec.output_kind:
            raise FailedPrecondition(
                f"{spec.model} v{spec.version}: the artifact's schema or output kind differs "
                "from the registry's record"
            )
        return model
    if spec.flavor == river_flavor.FLAVOR:
        return river_flavor.RiverModel.from_bytes(
            store.get(spec.artifact_sha256), spec.schema, spec.output_kind
        )
    if spec.flavor == sklearn_flavor.FLAVOR:
        return sklearn_flavor.SklearnModel.from_bytes(
            store.get(spec.artifact_sha256), spec.schema, spec.output_kind, spec.pickle_trusted
        )
    if spec.flavor == onnx_flavor.FLAVOR:
        return onnx_flavor.OnnxModel(store.get(spec.artifact_sha256), spec.schema, spec.output_kind)
    if spec.flavor == python_flavor.FLAVOR:
        return python_flavor.PythonModel(
            spec.entry_point,
            store.verified_path(spec.artifact_sha256),
            spec.schema,
            spec.output_kind,
        )
    raise FailedPrecondition(f"unknown flavor {spec.flavor!r} (known: {', '.join(FLAVORS)})")
