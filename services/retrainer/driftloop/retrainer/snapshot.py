"""Training data snapshots: the extracted window, written once, content-addressed.

A snapshot is one Parquet file in the artifact store: every feature as logged at serving
time, the label, the request id, the serving time, and whether the row is in the holdout.
Its id is the SHA-256 of the file, so the same rows always make the same id (with the
same pyarrow: the file names the writer's version), and a run can be repeated from the
id and the seed alone (the linear flavor trains
deterministically: the same snapshot and seed give the same artifact digest).

Reserved column names start with "__", which no feature name can.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from driftloop.kit.errors import FailedPrecondition
from driftloop.models.artifacts import ArtifactStore
from driftloop.models.schema import Schema
from driftloop.models.table import Column, Table

REQUEST_ID = "__request_id__"
TIME_US = "__time_us__"
HOLDOUT = "__holdout__"
TARGET = "__target__"


@dataclass(frozen=True)
class Snapshot:
    """The rows of a training window, oldest first."""

    features: Table
    target: Column
    request_ids: npt.NDArray[np.str_]
    time_us: npt.NDArray[np.float64]
    holdout: npt.NDArray[np.bool_]

    @property
    def rows(self) -> int:
        return len(self.request_ids)

    def train_table(self, target: str) -> Table:
        return self._table(~self.holdout, target)

    def holdout_table(self, target: str) -> Table:
        return self._table(self.holdout, target)

    def _table(self, rows: npt.NDArray[np.bool_], target: str) -> Table:
        columns = {name: column[rows] for name, column in self.features.columns.items()}
        columns[target] = self.target[rows]
        return Table(columns)


def split_newest(rows: int, holdout_fraction: float) -> npt.NDArray[np.bool_]:
    """The holdout mask of rows sorted oldest first: the newest share, at least one row."""
    held = max(1, round(rows * holdout_fraction))
    mask = np.zeros(rows, dtype=bool)
    mask[rows - held :] = True
    return mask


def to_parquet(snapshot: Snapshot) -> bytes:
    """The snapshot's bytes: the same rows give the same bytes."""
    columns: dict[str, pa.Array] = {
        REQUEST_ID: pa.array(snapshot.request_ids.tolist(), pa.string()),
        TIME_US: pa.array(snapshot.time_us, pa.float64()),
        HOLDOUT: pa.array(snapshot.holdout, pa.bool_()),
    }
    for name in sorted(snapshot.features.columns):
        column = snapshot.features.columns[name]
        columns[name] = _arrow(column)
    columns[TARGET] = _arrow(snapshot.target)
    sink = io.BytesIO()
    pq.write_table(pa.table(columns), sink, compression="zstd", write_statistics=False)
    return sink.getvalue()


def from_parquet(raw: bytes, schema: Schema) -> Snapshot:
    """A stored snapshot, with the features the schema names."""
    table = pq.read_table(io.BytesIO(raw))
    missing = [f.name for f in schema.features if f.name not in table.column_names]
    if missing:
        raise FailedPrecondition(
            f"the snapshot lacks the features {', '.join(missing)} of the model's schema"
        )
    features: dict[str, Column] = {}
    for feature in schema.features:
        features[feature.name] = _numpy(table.column(feature.name), feature.kind == "number")
    target = table.column(TARGET)
    return Snapshot(
        features=Table(features),
        target=_numpy(target, pa.types.is_floating(target.type)),
        request_ids=np.asarray(table.column(REQUEST_ID).to_pylist(), dtype=np.str_),
        time_us=table.column(TIME_US).to_numpy().astype(np.float64),
        holdout=table.column(HOLDOUT).to_numpy().astype(bool),
    )


def store(snapshot: Snapshot, artifacts: ArtifactStore) -> str:
    """Write the snapshot into the artifact store; return its id (SHA-256)."""
    return artifacts.put(to_parquet(snapshot))


def load(snapshot_id: str, artifacts: ArtifactStore, schema: Schema) -> Snapshot:
    return from_parquet(artifacts.get(snapshot_id), schema)


def _arrow(column: Column) -> pa.Array:
    if column.dtype.kind == "f":
        return pa.array(column, pa.float64())
    return pa.array(column.astype(str).tolist(), pa.string())


def _numpy(column: pa.ChunkedArray, numeric: bool) -> Column:
    if numeric:
        values: npt.NDArray[np.float64] = column.to_numpy().astype(np.float64)
        return values
    return np.asarray(column.to_pylist(), dtype=np.str_)
