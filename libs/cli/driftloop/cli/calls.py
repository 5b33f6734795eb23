"""Running one CLI command's calls with a client, and printing what comes back.

Cheap to import: the client (and with it gRPC and the generated code) is imported when a
command runs, so building the parser for `--help` loads none of it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from driftloop.cli.failures import EXIT_FAILED, UsageError

if TYPE_CHECKING:
    from google.protobuf.message import Message

    from driftloop.client import DriftloopClient

__all__ = ["EXIT_FAILED", "UsageError", "as_dict", "print_json", "show", "table", "with_client"]


def as_dict(message: Message) -> dict[str, Any]:
    """A message as the JSON the CLI prints: field names as in the protos, every field
    (zeros and empty ones too, so a script finds what is off)."""
    from google.protobuf import json_format

    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def print_json(data: Message | Any) -> None:
    """A message (as `as_dict`), or plain data, as JSON on stdout: `--json` prints this
    and nothing else, so `driftloop ... --json | jq` always parses."""
    from google.protobuf.message import Message

    print(json.dumps(as_dict(data) if isinstance(data, Message) else data, indent=2))


def show(as_json: bool, message: Message, text: Callable[[], str]) -> None:
    """Print `message` as JSON, or the human text made from it."""
    if as_json:
        print_json(message)
    else:
        print(text())


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns left-aligned to their widest cell; the last one is not padded."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


async def with_client(work: Callable[[DriftloopClient], Awaitable[int | None]]) -> int:
    """Run `work` with a client configured from the environment; its exit status (0 when
    it returns None). A refused call or an unreachable service raises a typed error that
    the CLI's error boundary (driftloop.cli.failures) prints as one line."""
    from driftloop.client import ClientSettings, DriftloopClient
    from driftloop.kit.settings import load_settings

    async with DriftloopClient(load_settings(ClientSettings)) as client:
        return await work(client) or 0
