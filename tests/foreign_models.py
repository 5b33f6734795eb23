"""Models trained elsewhere, made the way their users make them: a scikit-learn pipeline
with an imputer, a scaler and a one-hot encoder for the categories, saved with skops or
joblib; its ONNX export (skl2onnx, one input per column); MLflow model directories of
both (mlflow.sklearn.save_model, mlflow.onnx.save_model)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from driftloop.models.table import Table
from tests.datasets import churn

NUMBERS = tuple(f"x{i}" for i in range(6))
CATEGORIES = ("plan", "region")
TARGET = "churned"


def data(rows: int = 2000, seed: int = 1) -> Table:
    """The churn data without the columns the pipeline does not use."""
    table = churn(rows, seed)
    return Table({n: table.columns[n] for n in (*NUMBERS, *CATEGORIES, TARGET)})


def frame(table: Table) -> Any:
    import pandas as pd

    return pd.DataFrame({name: table.columns[name] for name in (*NUMBERS, *CATEGORIES)})


def pipeline(table: Table) -> Any:
    """A fitted classifier pipeline: impute and scale the numbers, one-hot the categories."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numbers = Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())])
    encode = ColumnTransformer(
        [
            ("numbers", numbers, list(NUMBERS)),
            ("categories", OneHotEncoder(handle_unknown="ignore"), list(CATEGORIES)),
        ]
    )
    model = Pipeline([("encode", encode), ("classify", LogisticRegression(max_iter=500))])
    return model.fit(frame(table), table.columns[TARGET].astype(np.int64))


def save_skops(model: Any, path: Path) -> Path:
    import skops.io

    skops.io.dump(model, path)
    return path


def save_joblib(model: Any, path: Path) -> Path:
    import joblib

    joblib.dump(model, path)
    return path


def onnx_export(model: Any) -> Any:
    """skl2onnx's export: one [n, 1] input per column (float numbers, string categories),
    outputs output_label and output_probability (a ZipMap of {class: p})."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    inputs = [(name, FloatTensorType([None, 1])) for name in NUMBERS] + [
        (name, StringTensorType([None, 1])) for name in CATEGORIES
    ]
    return to_onnx(model, initial_types=inputs, target_opset={"": 17, "ai.onnx.ml": 3})


def save_onnx(model: Any, path: Path) -> Path:
    path.write_bytes(onnx_export(model).SerializeToString())
    return path


def save_mlflow_sklearn(model: Any, path: Path, table: Table, serialization: str) -> Path:
    """mlflow.sklearn.save_model with a column signature (skops, pickle or cloudpickle)."""
    import mlflow.sklearn
    from mlflow.models import infer_signature

    features = frame(table.take(np.arange(50)))
    mlflow.sklearn.save_model(
        model,
        str(path),
        serialization_format=serialization,
        skops_trusted_types=["numpy.dtype"] if serialization == "skops" else None,
        signature=infer_signature(features, model.predict_proba(features)),
        pip_requirements=["scikit-learn"],  # no dependency inference (it imports the model)
    )
    return path


def save_mlflow_onnx(model: Any, path: Path) -> Path:
    import mlflow.onnx

    mlflow.onnx.save_model(onnx_export(model), str(path), pip_requirements=["onnxruntime"])
    return path


def write_parquet(table: Table, path: Path) -> Path:
    pq.write_table(pa.table(dict(table.columns)), path)
    return path
