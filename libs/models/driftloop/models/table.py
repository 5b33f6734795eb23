"""Training data as named numpy columns, read from CSV or Parquet, with a content hash."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from driftloop.kit.errors import InvalidArgument

Column = npt.NDArray[np.float64] | npt.NDArray[np.str_]


@dataclass(frozen=True)
class Table:
    """Columns of equal length: float64 for numbers (NaN for missing), str for categories."""

    columns: Mapping[str, Column]

    def __post_init__(self) -> None:
        lengths = {len(column) for column in self.columns.values()}
        if len(lengths) > 1:
            raise InvalidArgument("data", f"columns have different lengths: {sorted(lengths)}")

    @property
    def rows(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def is_numeric(self, name: str) -> bool:
        return self.columns[name].dtype.kind == "f"

    def take(self, index: npt.NDArray[np.int64]) -> Table:
        return Table({name: column[index] for name, column in self.columns.items()})

    def content_sha256(self) -> str:
        """A hash of names, types and values: the same data hashes the same from any file."""
        digest = hashlib.sha256()
        for name in sorted(self.columns):
            column = self.columns[name]
            digest.update(name.encode() + b"\0" + column.dtype.kind.encode())
            if column.dtype.kind == "f":
                digest.update(np.ascontiguousarray(column, dtype="<f8").tobytes())
            else:
                digest.update("\0".join(column.tolist()).encode())
        return digest.hexdigest()


def read_table(path: Path) -> Table:
    """Read a CSV, Parquet or JSON-lines file (one object per line): numeric columns as
    float64, everything else as text."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pa_csv
    import pyarrow.json as pa_json
    import pyarrow.parquet as pq

    if not path.is_file():
        raise InvalidArgument("data", f"no such file: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            arrow = pq.read_table(path)
        elif suffix in {".csv", ".txt"}:
            arrow = pa_csv.read_csv(path)
        elif suffix in {".jsonl", ".ndjson"}:
            arrow = pa_json.read_json(path)
        else:
            raise InvalidArgument(
                "data", f"{path.name}: only .csv, .parquet and .jsonl files are read"
            )
    except pa.ArrowInvalid as error:
        raise InvalidArgument("data", f"{path.name}: {error}") from None
    columns: dict[str, Column] = {}
    for name, column in zip(arrow.column_names, arrow.columns, strict=True):
        kind = column.type
        if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
            columns[name] = (
                column.cast(pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)
            )
        else:
            text = pc.fill_null(column.cast(pa.string()), "")
            columns[name] = np.asarray(text.to_pylist(), dtype=np.str_)
    if not columns or arrow.num_rows == 0:
        raise InvalidArgument("data", f"{path.name} has no rows")
    return Table(columns)
