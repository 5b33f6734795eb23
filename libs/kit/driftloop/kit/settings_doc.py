"""The settings as people read them: every environment variable of the settings classes
(each field's `description`, default and aliases), grouped, listed with its value here or
rendered as the README's table. `driftloop settings` and each service's `--help` both use
it, so a service lists its variables without depending on the CLI.

A field's `json_schema_extra` may carry `default_text` (what an unset default means:
"unset: embedded chDB") and `secret` (a value never printed that is not a SecretStr, such
as the webhooks with their credentials). A service describes itself with a `ServiceDoc`
(in its `config.py`): its settings class, the title of its group and the other settings
classes it reads. Classes from outside the kit say which group they go in, by its title
(`KAFKA`, `ADMIN`, `CLIENT`).
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from driftloop.kit.settings import (
    ArtifactSettings,
    ClickHouseSettings,
    GrpcServerSettings,
    KafkaSettings,
    LoggingSettings,
    variables,
)

SERVICE = "<SERVICE>"
# The groups settings from outside the kit can join, by title.
KAFKA = "Kafka"
ADMIN = "Admin, artifacts and lineage"
CLIENT = "Client and CLI"

# (group title, settings class): a class from outside the kit and where it is listed.
Placed = tuple[str, type[BaseSettings]]


@dataclass(frozen=True)
class ServiceDoc:
    """What a service's settings are: `python -m driftloop.<name>`, its group's title, its
    settings class, and what it reads besides them, its server's and the logging ones."""

    name: str
    title: str  # Markdown
    settings: type[GrpcServerSettings]
    reads: tuple[type[BaseSettings], ...] = ()  # the kit's classes
    placed: tuple[Placed, ...] = ()  # classes from outside the kit


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


def _extra(info: FieldInfo) -> Mapping[str, Any]:
    extra = info.json_schema_extra
    return extra if isinstance(extra, dict) else {}


def _default(info: FieldInfo) -> tuple[str, str]:
    """The default as the environment would spell it, and as the table shows it."""
    default = info.get_default(call_default_factory=True)
    value = spelled(default)
    text = _extra(info).get("default_text")
    if text is not None:
        return value, str(text)
    if value:
        return value, f"`{value}`"
    return value, "unset" if default is None else "empty"


def setting(cls: type[BaseSettings], name: str) -> Setting:
    """The field `name` of `cls`; a field without a description is refused."""
    info = cls.model_fields[name]
    if not info.description:
        raise ValueError(
            f"{cls.__name__}.{name} has no description: give it Field(description=...), "
            "the README's configuration table is made of them"
        )
    secret = info.annotation is not None and SecretStr in _types(info.annotation)
    return Setting(
        variables(cls, name),
        *_default(info),
        meaning=info.description,
        secret=secret or bool(_extra(info).get("secret")),
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
        for name, info in GrpcServerSettings.model_fields.items()
        if info.validation_alias is None
    ]


def _server(name: str, services: Sequence[ServiceDoc]) -> Setting:
    """A shared server field for all `services` as DRIFTLOOP_<SERVICE>_PORT (the default per
    service when they differ)."""
    generic = setting(GrpcServerSettings, name)
    defaults = {doc.name: _default(doc.settings.model_fields[name]) for doc in services}
    value, default = next(iter(defaults.values()))
    if len(set(defaults.values())) > 1:
        value = ""
        default = "per service: " + ", ".join(f"{s} {d}" for s, (_, d) in defaults.items())
    names = variables(GrpcServerSettings, name, f"DRIFTLOOP_{SERVICE}_")
    return replace(generic, names=names, value=value, default=default)


def _served(name: str, doc: ServiceDoc) -> Setting:
    """A shared server field of one service (DRIFTLOOP_GATEWAY_PORT, with its default)."""
    cls = doc.settings
    value, default = _default(cls.model_fields[name])
    generic = setting(GrpcServerSettings, name)
    return replace(generic, names=variables(cls, name), value=value, default=default, owner=cls)


def _of(cls: type[BaseSettings], names: Iterable[str] | None = None) -> tuple[Setting, ...]:
    return tuple(setting(cls, name) for name in (cls.model_fields if names is None else names))


def groups(
    services: Sequence[ServiceDoc], placed: Sequence[Placed] = (), *, per_service: bool = False
) -> list[Group]:
    """Every setting of `services` (and of the `placed` classes besides theirs), grouped in
    the order a reader needs them. `per_service` lists the shared server settings once per
    service (DRIFTLOOP_GATEWAY_PORT, ...) instead of as DRIFTLOOP_<SERVICE>_PORT."""
    outside = list(dict.fromkeys([*(p for doc in services for p in doc.placed), *placed]))
    unknown = sorted({where for where, _ in outside} - {KAFKA, ADMIN, CLIENT})
    if unknown:  # a class placed in no group would vanish from the table and the listing
        raise ValueError(f"no settings group {unknown}: place classes in KAFKA, ADMIN or CLIENT")

    def joined(title: str) -> tuple[Setting, ...]:
        return tuple(item for where, cls in outside if where == title for item in _of(cls))

    names = ", ".join(f"`{doc.name.upper()}`" for doc in services)
    # One service's own help names its server's settings only.
    server_title = f"Every service's gRPC server (`{SERVICE}`: {names})"
    if len(services) == 1:
        server_title = "gRPC server"
    if per_service:
        server = tuple(_served(name, doc) for doc in services for name in _shared())
    else:
        server = tuple(_server(name, services) for name in _shared())
    listed = [
        Group(KAFKA, (*_of(KafkaSettings), *joined(KAFKA))),
        Group("ClickHouse", _of(ClickHouseSettings)),
        Group(
            ADMIN,
            (setting(GrpcServerSettings, "admin_token"), *_of(ArtifactSettings), *joined(ADMIN)),
        ),
        *(Group(doc.title, _of(doc.settings, _own(doc.settings))) for doc in services),
        Group(server_title, server),
        Group("Logging", _of(LoggingSettings)),
        Group(CLIENT, joined(CLIENT)),
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


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(grouped: Sequence[Group]) -> str:
    """The README's configuration table of `grouped` settings."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for group in grouped:
        lines.append(f"| **{_cell(group.title)}** | | |")
        for item in group.settings:
            names = f"`{item.name}`"
            if len(item.names) > 1:
                names += " (or " + ", ".join(f"`{alias}`" for alias in item.names[1:]) + ")"
            if item.secret:
                names += " (secret)"
            lines.append(f"| {names} | {_cell(item.default)} | {_cell(item.meaning)} |")
    return "\n".join(lines) + "\n"


def plain(text: str) -> str:
    """Markdown's code spans as plain text."""
    return text.replace("`", "")


@dataclass(frozen=True)
class Current:
    """A setting's value here: from the environment (which variable) or the default."""

    setting: Setting
    value: str
    source: str  # the variable it was read from; "" for the default


def current(
    grouped: Sequence[Group], environ: Mapping[str, str]
) -> list[tuple[str, list[Current]]]:
    """Every setting's value in `environ` (matched as pydantic-settings does, whatever the
    case), by group."""
    upper = {key.upper(): value for key, value in environ.items()}
    found = []
    for group in grouped:
        values = []
        for item in group.settings:
            source = next((name for name in item.names if name.upper() in upper), "")
            value = upper[source.upper()] if source else ""
            if source and item.secret:
                value = "********"
            values.append(Current(item, value, source))
        found.append((plain(group.title), values))
    return found


def listing(found: Sequence[tuple[str, Sequence[Current]]]) -> str:
    """The human listing: a line per setting with its value and where it comes from, the
    meaning under it (and the default, when it is not the value)."""
    lines = []
    for title, values in found:
        lines.append(title)
        for entry in values:
            item = entry.setting
            meaning = plain(item.meaning)
            if entry.source:
                via = "" if entry.source == item.name else f": {entry.source}"
                lines.append(f"  {item.name}={entry.value}  (environment{via})")
                meaning += f". Default: {plain(item.default)}."
            elif item.value:
                lines.append(f"  {item.name}={item.value}  (default)")
            else:
                lines.append(f"  {item.name}  (not set)")
                meaning += f". Default: {plain(item.default)}."
            lines += textwrap.wrap(
                meaning,
                96,
                initial_indent=" " * 6,
                subsequent_indent=" " * 6,
                break_on_hyphens=False,
            )
    return "\n".join(lines)


def service_help(doc: ServiceDoc, environ: Mapping[str, str]) -> str:
    """`python -m driftloop.<service> --help`: the variables that service reads, as
    `driftloop settings` lists them (value here, default, meaning); secrets hidden."""
    owners = {
        doc.settings,
        GrpcServerSettings,
        LoggingSettings,
        *doc.reads,
        *(cls for _, cls in doc.placed),
    }
    found = []
    for title, values in current(groups([doc], per_service=True), environ):
        kept = [entry for entry in values if entry.setting.owner in owners]
        if kept:
            found.append((title, kept))
    intro = (
        f"Runs the {plain(doc.title).lower()} on its own, configured by these environment "
        "variables (secret values are not shown)."
    )
    usage = f"usage: python -m driftloop.{doc.name}\n\n{textwrap.fill(intro, 96)}\n\n"
    return usage + listing(found)
