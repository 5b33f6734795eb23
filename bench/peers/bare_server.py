"""The server part of bench/peers/echo_side.py and bench/peers/forwarder_side.py: one unary
Predict method on a bare grpc.aio server, run until SIGTERM or SIGINT.

Predict is registered as grpc's generated code registers a servicer's methods (a generic
and a registered method handler, the message classes' own FromString and
SerializeToString), and nothing else: no interceptors, no handler wrapping. Each side
brings its own Predict.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

Request = TypeVar("Request", bound=Message)
Response = TypeVar("Response", bound=Message)


async def serve_predict(
    port: int,
    service: str,
    predict: Callable[[Request, Any], Awaitable[Response]],
    request: type[Request],
    response: type[Response],
    options: Sequence[tuple[str, Any]] = (),
) -> None:
    """Serve `service`/Predict on 127.0.0.1:`port` (grpc channel arguments `options`) until
    the process gets SIGTERM or SIGINT, then stop with 1 s of grace for calls in flight."""
    server = grpc.aio.server(options=options)
    handlers = {
        "Predict": grpc.unary_unary_rpc_method_handler(
            predict,
            request_deserializer=request.FromString,
            response_serializer=response.SerializeToString,
        )
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
    server.add_registered_method_handlers(service, handlers)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    await server.stop(1)
