"""The naming rules and size limits every boundary checks: model, feature and variant
names, version numbers and aliases; request ids, keys, labels and feature counts. One copy,
so what the gateway accepts is what the registry, the inference and drift services and the
Kafka consumers accept too."""

from __future__ import annotations

import re

from driftloop.kit.errors import InvalidArgument, shown

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# A version is a number without leading zeros ("7", never "07": one version, one name).
VERSION_NUMBER = re.compile(r"^[1-9][0-9]{0,9}$")
ALIAS = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")

MAX_REQUEST_ID = 128  # characters
MAX_KEY_CHARS = 256  # entity keys, categories, labels
MAX_SHORT_CHARS = 128  # variants, sources, error codes, actors
MAX_FEATURES = 1000  # features of a row, classes of an output


def check_name(field_name: str, value: str, what: str = "name") -> str:
    """A model name or feature name: letters, digits, '.', '_' or '-'."""
    if not NAME.fullmatch(value):
        raise InvalidArgument(
            field_name,
            f"{shown(value)} is not a valid {what} (1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit)",
        )
    return value


def check_version(field_name: str, value: str) -> str:
    """A version number ("7", no leading zeros)."""
    if not VERSION_NUMBER.fullmatch(value):
        raise InvalidArgument(
            field_name, f"{shown(value)} is not a version number (digits, no leading zeros)"
        )
    return value


def check_version_ref(field_name: str, value: str) -> str:
    """A version number or an alias ("champion": lower-case letters, digits, '_', '-')."""
    if not value:
        raise InvalidArgument(field_name, "a version number or an alias is required")
    if not (VERSION_NUMBER.fullmatch(value) or ALIAS.fullmatch(value)):
        raise InvalidArgument(
            field_name,
            f"{shown(value)} is neither a version number (digits, no leading zeros) nor an "
            "alias (lower-case letters, digits, '_' or '-', starting with a letter)",
        )
    return value


def check_alias(field_name: str, value: str) -> str:
    """An alias ("champion"): lower-case letters, digits, '_' or '-', starting with a letter."""
    if not ALIAS.fullmatch(value):
        raise InvalidArgument(
            field_name,
            f"{shown(value)} is not an alias (lower-case letters, digits, '_' or '-', "
            "starting with a letter)",
        )
    return value


def is_version_number(value: str) -> bool:
    return VERSION_NUMBER.fullmatch(value) is not None
