"""The scikit-learn flavor: a fitted estimator or pipeline (encoders and all), saved with
skops by default, or as a pickle/joblib file only when its registrant vouched for it.

Loading a pickle runs whatever code the file names, so the registry refuses one unless the
version says `pickle_trusted` (`driftloop models register --trust-pickle`), and so does the
loader. A skops file loads only the types skops trusts by default (scikit-learn's own,
numpy's); one naming other types is refused the same way unless trusted, naming them.

Rows reach the model as a pyarrow Table with the schema's columns, which scikit-learn
(1.6 and later) takes as it takes a DataFrame: a ColumnTransformer selects by name and the
feature names are checked against those the pipeline was fitted with. A model fitted on a
bare array (no `feature_names_in_`) gets a float matrix in the schema's order.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from driftloop.kit.errors import FailedPrecondition, InvalidArgument
from driftloop.models.schema import OutputKind, Prediction, Row, Schema
from driftloop.models.scores import (
    Columns,
    Scores,
    columns_of,
    inferred_kind,
    label_of,
    predictions,
)

FLAVOR = "sklearn"
TRUST_FLAG = "--trust-pickle"
ArtifactFormat = Literal["skops", "pickle"]


def artifact_format(data: bytes) -> ArtifactFormat:
    """skops: a zip archive with the skops schema.json; anything else is taken for a
    pickle (joblib files are pickles too, compressed or not), the unsafe case."""
    if data[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                if "schema.json" in archive.namelist():
                    return "skops"
        except zipfile.BadZipFile:
            pass
    return "pickle"


# Types skops does not trust by default that build no code: a numpy dtype is made from its
# name (an imputer or encoder keeps one as its `dtype`).
DATA_TYPES = frozenset({"numpy.dtype"})


def untrusted_types(data: bytes) -> list[str]:
    """The types in a skops file that skops does not trust by default, nor we."""
    import skops.io

    return [name for name in skops.io.get_untrusted_types(data=data) if name not in DATA_TYPES]


def check_trust(data: bytes, trusted: bool, field: str = "version.pickle_trusted") -> None:
    """Refuse an artifact that would run code when loaded unless its registrant vouched."""
    if trusted:
        return
    if artifact_format(data) == "pickle":
        raise InvalidArgument(
            field,
            "the artifact is a pickle or joblib file, and loading one runs whatever code it "
            f"names; save the model with skops (skops.io.dump), or register it with "
            f"{TRUST_FLAG} if you trust where the file came from",
        )
    names = untrusted_types(data)
    if names:
        raise InvalidArgument(
            field,
            f"the skops file holds types skops does not trust by default ({', '.join(names)}); "
            f"register it with {TRUST_FLAG} if you trust where the file came from",
        )


def load_estimator(data: bytes, trusted: bool) -> Any:
    check_trust(data, trusted)
    if artifact_format(data) == "skops":
        import skops.io

        return skops.io.loads(data, trusted=[*DATA_TYPES, *untrusted_types(data)])
    import joblib

    # Vouched for by its registrant (checked above). joblib reads plain pickles too, and
    # its own compressed files.
    return joblib.load(io.BytesIO(data))


class SklearnModel:
    inline = False  # scikit-learn calls take a millisecond or more: a worker thread

    def __init__(self, estimator: Any, schema: Schema, output_kind: OutputKind | None) -> None:
        self.estimator = estimator
        self.schema = schema
        self.classes: tuple[str, ...] = ()
        if hasattr(estimator, "predict_proba") and hasattr(estimator, "classes_"):
            self.classes = tuple(label_of(c) for c in estimator.classes_)
        names = getattr(estimator, "feature_names_in_", None)
        self.by_name = names is not None
        self._finite = not any(f.allow_nan for f in schema.features)
        if names is not None and set(names) != set(schema.names):
            missing = sorted(set(names) - set(schema.names))
            extra = sorted(set(schema.names) - set(names))
            raise FailedPrecondition(
                "the schema does not match the features the pipeline was fitted with"
                + (f"; missing: {', '.join(missing)}" if missing else "")
                + (f"; not in the pipeline: {', '.join(extra)}" if extra else "")
            )
        if not self.by_name and any(f.kind == "category" for f in schema.features):
            raise FailedPrecondition(
                "a model fitted without feature names takes a float matrix: its schema can "
                "only have numbers (fit the pipeline on a DataFrame to use categories)"
            )
        kind = inferred_kind(Scores(np.zeros((0, len(self.classes))), self.classes))
        if output_kind is not None and (output_kind == "regression") != (kind == "regression"):
            raise FailedPrecondition(
                f"the model is a {'classifier' if self.classes else 'regressor'}, "
                f"not a {output_kind} model"
            )
        if output_kind == "binary" and len(self.classes) != 2:
            raise FailedPrecondition(f"binary needs 2 classes, the model has {len(self.classes)}")
        self.output_kind: OutputKind = output_kind or kind

    @classmethod
    def from_bytes(
        cls, data: bytes, schema: Schema, output_kind: OutputKind | None, trusted: bool
    ) -> SklearnModel:
        return cls(load_estimator(data, trusted), schema, output_kind)

    def score(self, columns: Columns) -> Scores:
        if self.by_name:
            import pyarrow as pa

            features: Any = pa.table({name: columns[name] for name in self.schema.names})
        else:
            features = np.column_stack([columns[name] for name in self.schema.names])
        import sklearn

        # Validated rows hold no NaN or infinity unless the schema allows NaN somewhere:
        # then scikit-learn's own finiteness checks (a fifth of a one-row call) are moot.
        with sklearn.config_context(assume_finite=self._finite):  # thread-local
            if self.classes:
                probabilities = self.estimator.predict_proba(features)
                return Scores(np.asarray(probabilities, dtype=np.float64), self.classes)
            values = self.estimator.predict(features)
        return Scores(np.asarray(values, dtype=np.float64).reshape(-1))

    def predict(self, rows: Sequence[Row]) -> list[Prediction]:
        return predictions(self.score(columns_of(rows, self.schema)), self.output_kind)
