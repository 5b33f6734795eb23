"""The registry's versions and the ModelVersion message: a registration survives the trip."""

from __future__ import annotations

import datetime as dt

import pytest

from driftloop.kit.errors import InvalidArgument
from driftloop.kit.times import stamp
from driftloop.retrainer.registry import VersionRecord
from driftloop.retrainer.version_proto import (
    new_version_from_proto,
    version_from_proto,
    version_to_proto,
)
from driftloop.v1 import common_pb2, registry_pb2

START = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


def message() -> registry_pb2.ModelVersion:
    return registry_pb2.ModelVersion(
        model="churn",
        flavor="linear",
        artifact_sha256="a" * 64,
        schema=common_pb2.InputSchema(
            features=[
                common_pb2.FeatureSpec(name="x", type=common_pb2.FEATURE_TYPE_NUMBER),
                common_pb2.FeatureSpec(
                    name="region", type=common_pb2.FEATURE_TYPE_CATEGORY, categories=["a", "b"]
                ),
            ]
        ),
        output_kind=common_pb2.OUTPUT_KIND_BINARY,
        metrics=[
            registry_pb2.Metric(name="log_loss", value=0.3),
            registry_pb2.Metric(name="accuracy", value=0.9),
        ],
        hyperparameters={"target": "churned"},
        seed=7,
        data=registry_pb2.DataSnapshot(
            source="t",
            row_count=10,
            content_sha256="b" * 64,
            window=common_pb2.TimeWindow(start=stamp(START)),
        ),
        code_version="git:abc",
        environment={"python": "3.11"},
        created_by="ci",
        tags={"k": "v"},
        parent_version="2",
        baseline=registry_pb2.Baseline(
            numeric=[registry_pb2.NumericBaseline(feature="x", edges=[0.5])]
        ),
        entry_point="",
        pickle_trusted=True,
    )


def test_a_registration_and_its_record_convert_back_to_the_same_message() -> None:
    new = new_version_from_proto(message())
    assert new.metrics == {"log_loss": 0.3, "accuracy": 0.9}
    assert new.data.window_start == START and new.data.window_end is None
    record = VersionRecord.of(
        new, version="3", created=START + dt.timedelta(days=1), aliases=("champion",)
    )
    expected = message()
    expected.version = "3"
    expected.created.CopyFrom(stamp(START + dt.timedelta(days=1)))
    expected.aliases.append("champion")
    assert version_to_proto(record) == expected
    assert version_from_proto(expected) == record


def test_what_a_registrant_left_out_stays_out() -> None:
    bare = registry_pb2.ModelVersion(
        model="churn",
        flavor="linear",
        artifact_sha256="a" * 64,
        schema=message().schema,
        output_kind=common_pb2.OUTPUT_KIND_REGRESSION,
    )
    new = new_version_from_proto(bare)
    assert new.baseline is None and new.output_kind == "regression"
    record = VersionRecord.of(new, version="1", created=START)
    sent = version_to_proto(record)
    assert not sent.HasField("data") and not sent.HasField("baseline")


def spoiled(field: str) -> registry_pb2.ModelVersion:
    """The message with `field` made invalid."""
    bad = message()
    if field == "version.model":
        bad.model = "two words"
    elif field == "version.flavor":
        bad.flavor = "pickle"
    elif field == "version.schema.features[0].type":
        bad.schema.features[0].ClearField("type")
    elif field == "version.data.window.start":
        bad.data.window.start.nanos = -1
    else:
        bad.ClearField("output_kind")
    return bad


@pytest.mark.parametrize(
    "field",
    [
        "version.model",
        "version.flavor",
        "version.schema.features[0].type",
        "version.data.window.start",
        "version.output_kind",
    ],
)
def test_a_bad_registration_names_its_field(field: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        new_version_from_proto(spoiled(field))
    assert raised.value.field == field


def test_the_name_is_checked_before_the_schema_as_the_registry_always_did() -> None:
    bad = message()
    bad.model = "two words"
    bad.ClearField("schema")
    with pytest.raises(InvalidArgument) as raised:
        new_version_from_proto(bad)
    assert raised.value.field == "version.model"
