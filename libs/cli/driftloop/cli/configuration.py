"""`driftloop settings`: every environment variable driftloop reads, from the settings
classes themselves (each field's `description`, default and aliases).

Without options it lists each setting with its value here (from the environment or the
default), the default and the meaning, and checks them as the services would (exit status
2 naming every bad variable). `--markdown` renders the README's configuration table and
`--readme FILE` rewrites it between the settings markers, so the table cannot drift from
the code (a unit test compares them). A field's `json_schema_extra` may carry
`default_text` (what an unset default means: "unset: embedded chDB") and `secret` (a value
never printed that is not a SecretStr, such as the webhooks with their credentials).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from driftloop.cli.calls import EXIT_FAILED
from driftloop.client import ClientSettings
from driftloop.drift.config import DriftSettings
from driftloop.gateway.config import GatewaySettings
from driftloop.inference.config import InferenceSettings
from driftloop.kafka.local_broker import LocalBrokerSettings
from driftloop.kit.settings import (
    ArtifactSettings,
    ClickHouseSettings,
    ConfigError,
    GrpcServerSettings,
    KafkaSettings,
    LoggingSettings,
    load_settings,
    variables,
)
from driftloop.models.registration import LineageSettings
from driftloop.retrainer.config import RetrainerSettings
from driftloop.shadow.config import ShadowSettings

BEGIN = "<!-- settings:begin -->"
END = "<!-- settings:end -->"
REGENERATE = "make settings-doc"

# The services in port order, each with the title of its group.
SERVICES: dict[str, tuple[str, type[GrpcServerSettings]]] = {
    "gateway": ("Gateway", GatewaySettings),
    "inference": ("Inference", InferenceSettings),
    "drift": ("Drift service", DriftSettings),
    "shadow": ("Shadow service", ShadowSettings),
    "retrainer": ("Retrainer (and the registry)", RetrainerSettings),
}
SERVICE = "<SERVICE>"


@dataclass(frozen=True)
class Setting:
    """One environment variable (and its aliases), as the table and the listing show it."""

    names: tuple[str, ...]
    value: str  # the default as the environment would spell it; "" for none
    default: str  # Markdown: `value`, or what an unset or empty default means
    meaning: str  # Markdown
    secret: bool
    owner: type[BaseSettings]

    @property
    def name(self) -> str:
        return self.names[0]


@dataclass(frozen=True)
class Group:
    title: str  # Markdown
    settings: tuple[Setting, ...]


def spelled(value: object) -> str:
    """A default as the environment would spell it ("" for nothing)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list | tuple | set | frozenset):
        return ",".join(spelled(item) for item in value)
    return str(value)


def _extra(field: FieldInfo) -> Mapping[str, Any]:
    extra = field.json_schema_extra
    return extra if isinstance(extra, dict) else {}


def _default(field: FieldInfo) -> tuple[str, str]:
    """The default as the environment would spell it, and as the table shows it."""
    default = field.get_default(call_default_factory=True)
    value = spelled(default)
    text = _extra(field).get("default_text")
    if text is not None:
        return value, str(text)
    if value:
        return value, f"`{value}`"
    return value, "unset" if default is None else "empty"


def setting(cls: type[BaseSettings], name: str) -> Setting:
    """The field `name` of `cls`; a field without a description is refused."""
    field = cls.model_fields[name]
    if not field.description:
        raise ValueError(
            f"{cls.__name__}.{name} has no description: give it Field(description=...), "
            "the README's configuration table is made of them"
        )
    secret = field.annotation is not None and SecretStr in _types(field.annotation)
    return Setting(
        variables(cls, name),
        *_default(field),
        meaning=field.description,
        secret=secret or bool(_extra(field).get("secret")),
        owner=cls,
    )


def _types(annotation: Any) -> set[Any]:
    """The annotation and every type inside it (`SecretStr | None` holds SecretStr)."""
    found = {annotation}
    for inner in getattr(annotation, "__args__", ()):
        found |= _types(inner)
    return found


def _own(cls: type[GrpcServerSettings]) -> list[str]:
    """A service's own fields (not the server settings every service shares)."""
    return [name for name in cls.model_fields if name not in GrpcServerSettings.model_fields]


def _shared() -> list[str]:
    """The server fields that every service reads with its own prefix."""
    return [
        name
        for name, field in GrpcServerSettings.model_fields.items()
        if field.validation_alias is None
    ]


def _server(name: str, service: str | None = None) -> Setting:
    """A shared server field for one service (DRIFTLOOP_GATEWAY_PORT, with its default), or
    for all as DRIFTLOOP_<SERVICE>_PORT (the default per service when they differ)."""
    generic = setting(GrpcServerSettings, name)
    if service is not None:
        cls = SERVICES[service][1]
        value, default = _default(cls.model_fields[name])
        return replace(generic, names=variables(cls, name), value=value, default=default, owner=cls)
    defaults = {service: _default(cls.model_fields[name]) for service, (_, cls) in SERVICES.items()}
    value, default = next(iter(defaults.values()))
    if len(set(defaults.values())) > 1:
        value = ""
        default = "per service: " + ", ".join(f"{s} {d}" for s, (_, d) in defaults.items())
    names = variables(GrpcServerSettings, name, f"DRIFTLOOP_{SERVICE}_")
    return replace(generic, names=names, value=value, default=default)


def _of(cls: type[BaseSettings], names: Iterable[str] | None = None) -> tuple[Setting, ...]:
    return tuple(setting(cls, name) for name in (cls.model_fields if names is None else names))


def groups(*, per_service: bool = False) -> list[Group]:
    """Every setting, grouped in the order a reader needs them. `per_service` lists the
    shared server settings once per service (DRIFTLOOP_GATEWAY_PORT, ...) instead of as
    DRIFTLOOP_<SERVICE>_PORT."""
    services = ", ".join(f"`{service.upper()}`" for service in SERVICES)
    if per_service:
        server = tuple(_server(name, service) for service in SERVICES for name in _shared())
    else:
        server = tuple(_server(name) for name in _shared())
    listed = [
        Group("Kafka", (*_of(KafkaSettings), *_of(LocalBrokerSettings))),
        Group("ClickHouse", _of(ClickHouseSettings)),
        Group(
            "Admin, artifacts and lineage",
            (
                setting(GrpcServerSettings, "admin_token"),
                *_of(ArtifactSettings),
                *_of(LineageSettings),
            ),
        ),
        *(Group(title, _of(cls, _own(cls))) for title, cls in SERVICES.values()),
        Group(f"Every service's gRPC server (`{SERVICE}`: {services})", server),
        Group("Logging", _of(LoggingSettings)),
        Group("Client and CLI", _of(ClientSettings)),
    ]
    return _once(listed)


def _once(listed: list[Group]) -> list[Group]:
    """Each variable in its first group only (the client's DRIFTLOOP_ADMIN_TOKEN is the
    services' one)."""
    seen: set[str] = set()
    kept = []
    for group in listed:
        fresh = tuple(item for item in group.settings if item.name not in seen)
        seen.update(item.name for item in fresh)
        kept.append(Group(group.title, fresh))
    return kept


def known_variables() -> set[str]:
    """Every variable a settings class reads, aliases and each service's own included."""
    return {name for group in groups(per_service=True) for s in group.settings for name in s.names}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown() -> str:
    """The README's configuration table."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for group in groups():
        lines.append(f"| **{_cell(group.title)}** | | |")
        for item in group.settings:
            names = f"`{item.name}`"
            if len(item.names) > 1:
                names += " (or " + ", ".join(f"`{alias}`" for alias in item.names[1:]) + ")"
            if item.secret:
                names += " (secret)"
            lines.append(f"| {names} | {_cell(item.default)} | {_cell(item.meaning)} |")
    return "\n".join(lines) + "\n"


def block(text: str) -> str:
    """What stands between the settings markers of `text`."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"no {BEGIN} ... {END} block")
    return text[start + len(BEGIN) : end].strip("\n") + "\n"


def with_block(text: str, table: str) -> str:
    """`text` with `table` between its settings markers."""
    block(text)  # the markers are there, in order
    start, end = text.find(BEGIN) + len(BEGIN), text.find(END)
    return f"{text[:start]}\n{table}{text[end:]}"


def _plain(text: str) -> str:
    return text.replace("`", "")


@dataclass(frozen=True)
class Current:
    """A setting's value here: from the environment (which variable) or the default."""

    setting: Setting
    value: str
    source: str  # the variable it was read from; "" for the default


def current(environ: Mapping[str, str]) -> list[tuple[str, list[Current]]]:
    """Every setting's value in `environ` (matched as pydantic-settings does, whatever the
    case), by group."""
    upper = {key.upper(): value for key, value in environ.items()}
    found = []
    for group in groups(per_service=True):
        values = []
        for item in group.settings:
            source = next((name for name in item.names if name.upper() in upper), "")
            value = upper[source.upper()] if source else ""
            if source and item.secret:
                value = "********"
            values.append(Current(item, value, source))
        found.append((_plain(group.title), values))
    return found


def listing(found: list[tuple[str, list[Current]]]) -> str:
    """The human listing: a line per setting with its value and where it comes from, the
    meaning under it (and the default, when it is not the value)."""
    lines = []
    for title, values in found:
        lines.append(title)
        for entry in values:
            item = entry.setting
            meaning = _plain(item.meaning)
            if entry.source:
                via = "" if entry.source == item.name else f": {entry.source}"
                lines.append(f"  {item.name}={entry.value}  (environment{via})")
                meaning += f". Default: {_plain(item.default)}."
            elif item.value:
                lines.append(f"  {item.name}={item.value}  (default)")
            else:
                lines.append(f"  {item.name}  (not set)")
                meaning += f". Default: {_plain(item.default)}."
            lines += textwrap.wrap(
                meaning,
                96,
                initial_indent=" " * 6,
                subsequent_indent=" " * 6,
                break_on_hyphens=False,
            )
    return "\n".join(lines)


def as_json(found: list[tuple[str, list[Current]]]) -> list[dict[str, Any]]:
    return [
        {
            "group": title,
            "variable": entry.setting.name,
            "aliases": list(entry.setting.names[1:]),
            "value": entry.value if entry.source else None,
            "source": entry.source or "default",
            "default": _plain(entry.setting.default),
            "meaning": _plain(entry.setting.meaning),
            "secret": entry.setting.secret,
        }
        for title, values in found
        for entry in values
    ]


def problems() -> list[str]:
    """Every settings class read from the environment as its process reads it: the errors
    (each once)."""
    owners = {
        item.owner: None
        for group in groups(per_service=True)
        for item in group.settings
        if item.owner is not GrpcServerSettings  # its admin token: every service reads it
    }
    found: dict[str, None] = {}
    for cls in owners:
        try:
            load_settings(cls)
        except ConfigError as error:
            found[str(error)] = None
    return list(found)


# What each service reads besides its own settings, its server's and the logging ones.
SERVICE_READS: dict[str, tuple[type[BaseSettings], ...]] = {
    "gateway": (KafkaSettings,),
    "inference": (KafkaSettings, ArtifactSettings),
    "drift": (KafkaSettings, ClickHouseSettings),
    "shadow": (KafkaSettings, ClickHouseSettings),
    "retrainer": (KafkaSettings, ClickHouseSettings, ArtifactSettings, LineageSettings),
}


def service_help(service: str, environ: Mapping[str, str] = os.environ) -> str:
    """`python -m driftloop.<service> --help`: the variables that service reads, as
    `driftloop settings` lists them (value here, default, meaning)."""
    cls = SERVICES[service][1]
    owners = {*SERVICE_READS[service], cls, GrpcServerSettings, LoggingSettings}
    found = [
        (title, [entry for entry in values if entry.setting.owner in owners])
        for title, values in current(environ)
    ]
    intro = (
        f"Runs the {_plain(SERVICES[service][0]).lower()} on its own, configured by these "
        "environment variables (secret values are not shown)."
    )
    return (
        f"usage: python -m driftloop.{service}\n\n{textwrap.fill(intro, 96)}\n\n"
        + listing([(title, values) for title, values in found if values])
    )


def rewrite(path: Path) -> str:
    """Put the table between the settings markers of the file at `path`; say what happened."""
    text = path.read_text()
    updated = with_block(text, markdown())
    if updated == text:
        return f"{path}: the configuration table is up to date"
    path.write_text(updated)
    return f"{path}: configuration table rewritten"


async def run(args: argparse.Namespace) -> int:
    if args.readme is not None:
        try:
            print(rewrite(args.readme))
        except (OSError, ValueError) as error:
            print(f"driftloop: {args.readme}: {error}", file=sys.stderr)
            return EXIT_FAILED
        return 0
    if args.markdown:
        print(markdown(), end="")
        return 0
    found = current(os.environ)
    if args.json:
        print(json.dumps(as_json(found), indent=2))
    else:
        print(listing(found))
    bad = problems()
    for line in bad:
        print(f"driftloop: {line}", file=sys.stderr)
    return EXIT_FAILED if bad else 0

