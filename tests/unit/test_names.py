"""The shared name rules (driftloop.kit.names) at their edges."""

from __future__ import annotations

import pytest

from driftloop.kit.errors import InvalidArgument
from driftloop.kit.names import (
    check_alias,
    check_name,
    check_version,
    check_version_ref,
    is_version_number,
)


@pytest.mark.parametrize("name", ["churn", "a", "Churn.v2_b-3", "7", "x" * 128])
def test_names_accepted(name: str) -> None:
    assert check_name("model", name) == name


@pytest.mark.parametrize("name", ["", "-churn", ".churn", "no spaces", "x" * 129, "é"])
def test_names_refused_naming_the_field(name: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        check_name("features.bad", name, "feature name")
    assert refused.value.field == "features.bad"
    assert "not a valid feature name" in refused.value.reason


@pytest.mark.parametrize(
    ("value", "number", "ref"),
    [
        ("7", True, True),
        ("1234567890", True, True),
        ("12345678901", False, False),
        ("07", False, False),
        ("0", False, False),
        ("champion", False, True),
        ("canary-2", False, True),
        ("Champion", False, False),
        ("2nd", False, False),
        ("", False, False),
    ],
)
def test_versions_and_refs(value: str, number: bool, ref: bool) -> None:
    assert is_version_number(value) is number
    if number:
        assert check_version("version", value) == value
    else:
        with pytest.raises(InvalidArgument, match="version"):
            check_version("version", value)
    if ref:
        assert check_version_ref("model.version", value) == value
    else:
        with pytest.raises(InvalidArgument):
            check_version_ref("model.version", value)


@pytest.mark.parametrize("alias", ["champion", "c", "a_b-1", "a" * 63])
def test_aliases_accepted(alias: str) -> None:
    assert check_alias("alias", alias) == alias


@pytest.mark.parametrize("alias", ["", "7", "Champion", "_x", "a" * 64, "a b"])
def test_aliases_refused_naming_the_field(alias: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        check_alias("alias", alias)
    assert refused.value.field == "alias"
    assert "is not an alias" in refused.value.reason
