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


async def with_client(work: Callable[[DriftloopClient], Awaitable[None]]) -> int:
    """Run `work` with a client from the environment; a gRPC error is printed, exit 1."""
    client = DriftloopClient(load_settings(ClientSettings))
    try:
        await work(client)
    except grpc.aio.AioRpcError as error:
        print(f"driftloop: {error.code().name}: {error.details()}", file=sys.stderr)
        return 1
    finally:
        await client.close()
    return 0
