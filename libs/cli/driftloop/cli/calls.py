"""Running one CLI command's calls with a client, and printing what comes back."""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from driftloop.client import ClientSettings, DriftloopClient
from driftloop.kit.settings import load_settings


def as_dict(message: Message) -> dict[str, Any]:
    """A message as the JSON the CLI prints: field names as in the protos, every field
    (zeros and empty ones too, so a script finds what is off)."""
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def print_json(message: Message) -> None:
    print(json.dumps(as_dict(message), indent=2))


def show(as_json: bool, message: Message, text: Callable[[], str]) -> None:
    """Print `message` as JSON, or the human text made from it."""
    print(json.dumps(as_dict(message), indent=2) if as_json else text())


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns left-aligned to their widest cell; the last one is not padded."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


# An expected failure (a refused call, an unreachable service): one line on stderr, and
# this exit status, for every command.
EXIT_FAILED = 2


async def with_client(work: Callable[[DriftloopClient], Awaitable[None]]) -> int:
    """Run `work` with a client from the environment; a gRPC error is one line on stderr
    and exit status 2."""
    client = DriftloopClient(load_settings(ClientSettings))
    try:
        await work(client)
    except grpc.aio.AioRpcError as error:
        print(f"driftloop: {error.code().name}: {error.details()}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        await client.close()
    return 0
