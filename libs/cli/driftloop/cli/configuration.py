"""`driftloop settings`: every environment variable driftloop reads, from the settings
classes themselves (each field's `description`, default and aliases).

Without options it lists each setting with its value here (from the environment or the
default), the default and the meaning, and checks them as the services would (exit status
2 naming every bad variable). `--markdown` renders the README's configuration table and
`--readme FILE` rewrites it between the settings markers, so the table cannot drift from
the code (a unit test compares them). The listing and the table are the kit's
(`driftloop.kit.settings_doc`, which each service's `--help` uses too); this module puts
together every service's and library's settings.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from driftloop.cli.calls import EXIT_FAILED
from driftloop.client import ClientSettings
from driftloop.drift.config import SETTINGS_DOC as DRIFT
from driftloop.gateway.config import SETTINGS_DOC as GATEWAY
from driftloop.inference.config import SETTINGS_DOC as INFERENCE
from driftloop.kafka.local_broker import LocalBrokerSettings
from driftloop.kit import settings_doc
from driftloop.kit.settings import ConfigError, GrpcServerSettings, load_settings
from driftloop.kit.settings_doc import CLIENT, KAFKA, Current, Group, listing, plain
from driftloop.retrainer.config import SETTINGS_DOC as RETRAINER
from driftloop.shadow.config import SETTINGS_DOC as SHADOW

BEGIN = "<!-- settings:begin -->"
END = "<!-- settings:end -->"
REGENERATE = "make settings-doc"

# The services in port order.
DOCS = (GATEWAY, INFERENCE, DRIFT, SHADOW, RETRAINER)
# Each service's group title and settings class, by name.
SERVICES: dict[str, tuple[str, type[GrpcServerSettings]]] = {
    doc.name: (doc.title, doc.settings) for doc in DOCS
}
# Settings no service reads: the local broker's (`driftloop up`) and the client's.
PLACED = ((KAFKA, LocalBrokerSettings), (CLIENT, ClientSettings))


def groups(*, per_service: bool = False) -> list[Group]:
    """Every setting, grouped in the order a reader needs them. `per_service` lists the
    shared server settings once per service (DRIFTLOOP_GATEWAY_PORT, ...) instead of as
    DRIFTLOOP_<SERVICE>_PORT."""
    return settings_doc.groups(DOCS, PLACED, per_service=per_service)


def known_variables() -> set[str]:
    """Every variable a settings class reads, aliases and each service's own included."""
    return {name for group in groups(per_service=True) for s in group.settings for name in s.names}


def markdown() -> str:
    """The README's configuration table."""
    return settings_doc.markdown(groups())


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


def current(environ: Mapping[str, str]) -> list[tuple[str, list[Current]]]:
    """Every setting's value in `environ`, by group."""
    return settings_doc.current(groups(per_service=True), environ)


def as_json(found: list[tuple[str, list[Current]]]) -> list[dict[str, Any]]:
    return [
        {
            "group": title,
            "variable": entry.setting.name,
            "aliases": list(entry.setting.names[1:]),
            "value": entry.value if entry.source else None,
            "source": entry.source or "default",
            "default": plain(entry.setting.default),
            "meaning": plain(entry.setting.meaning),
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
