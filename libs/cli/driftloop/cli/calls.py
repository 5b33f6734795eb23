"""Running one CLI command's calls with a client, and printing what comes back."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from driftloop.client import ClientSettings, DriftloopClient
from driftloop.kit.settings import load_settings


def print_json(message: Message) -> None:
    print(json_format.MessageToJson(message, indent=2, preserving_proto_field_name=True))


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
