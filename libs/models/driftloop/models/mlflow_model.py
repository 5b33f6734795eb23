"""An MLflow model directory read without MLflow: its MLmodel file says which flavor saved
it, which file holds the model and, when logged with a signature, the input columns.

Accepted flavors (the first one present, in this order):
- `onnx`: the file named by `data` (mlflow.onnx.save_model), registered as the onnx flavor;
- `sklearn`: the file named by `pickled_model` (mlflow.sklearn.save_model), registered as
  the sklearn flavor: `serialization_format: skops` loads safely, `pickle` and
  `cloudpickle` (MLflow's default) are pickles and need the trust flag.
Any other flavor (pytorch, xgboost, a custom python_function...) is refused: export such a
model to ONNX. A column signature becomes the schema (double, float, long, integer and
boolean columns are numbers, string columns categories); a tensor signature says nothing
about columns and is ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from driftloop.kit.errors import InvalidArgument
from driftloop.models import onnx_flavor, sklearn_flavor
from driftloop.models.schema import Feature, FeatureKind, Schema

ACCEPTED = (onnx_flavor.FLAVOR, sklearn_flavor.FLAVOR)
_KINDS: dict[str, FeatureKind] = {
    "double": "number",
    "float": "number",
    "long": "number",
    "integer": "number",
    "boolean": "number",
    "string": "category",
}


@dataclass(frozen=True)
class MlflowModel:
    flavor: str
    artifact: Path
    schema: Schema | None
    tags: dict[str, str]


def is_mlflow_directory(path: Path) -> bool:
    return path.is_dir() and (path / "MLmodel").is_file()


def read_mlflow_model(directory: Path, field: str = "artifact") -> MlflowModel:
    """The flavor, model file, schema (from the signature) and lineage tags of a directory."""
    try:
        document: Any = yaml.safe_load((directory / "MLmodel").read_text())
    except (OSError, yaml.YAMLError) as error:
        raise InvalidArgument(field, f"{directory}/MLmodel is not readable: {error}") from None
    flavors = document.get("flavors") if isinstance(document, dict) else None
    if not isinstance(flavors, dict):
        raise InvalidArgument(field, f"{directory}/MLmodel has no flavors")
    tags = {"mlflow.flavors": ",".join(sorted(flavors))}
    for key in ("run_id", "model_uuid", "mlflow_version"):
        if document.get(key):
            tags[f"mlflow.{key}"] = str(document[key])
    schema = _signature_schema(document.get("signature"))
    if isinstance(flavors.get("onnx"), dict):
        file = flavors["onnx"].get("data", "model.onnx")
        return MlflowModel(onnx_flavor.FLAVOR, _inside(directory, file, field), schema, tags)
    if isinstance(flavors.get("sklearn"), dict):
        sk = flavors["sklearn"]
        tags["mlflow.serialization_format"] = str(sk.get("serialization_format", "pickle"))
        file = sk.get("pickled_model", "model.pkl")
        return MlflowModel(sklearn_flavor.FLAVOR, _inside(directory, file, field), schema, tags)
    raise InvalidArgument(
        field,
        f"the MLflow model's flavors ({', '.join(sorted(flavors))}) include none driftloop "
        f"serves ({', '.join(ACCEPTED)}); export the model to ONNX",
    )


def _inside(directory: Path, name: object, field: str) -> Path:
    path = (directory / str(name)).resolve()
    if directory.resolve() not in path.parents or not path.is_file():
        raise InvalidArgument(field, f"MLmodel names {name!r}, which is not a file in {directory}")
    return path


def _signature_schema(signature: object) -> Schema | None:
    if not isinstance(signature, dict) or not signature.get("inputs"):
        return None
    try:
        inputs = json.loads(signature["inputs"])
    except (TypeError, ValueError):
        return None
    features = []
    for column in inputs:
        kind = _KINDS.get(column.get("type", "")) if "name" in column else None
        if kind is None:
            return None  # a tensor signature, or a column type with no feature kind
        features.append(Feature(str(column["name"]), kind))
    return Schema(tuple(features)) if features else None
