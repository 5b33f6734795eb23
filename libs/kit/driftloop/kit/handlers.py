"""Every RPC handler of a service, wrapped once when it is registered.

The wrapper carries the cross-cutting concerns of every call:
- admin methods (marked `option (driftloop.v1.admin) = true` in the protos) need the
  bearer token, compared in constant time;
- domain errors become their status code, with a google.rpc.BadRequest detail for
  INVALID_ARGUMENT so clients in any language can read the field and the reason;
- an unexpected exception is logged once, with its traceback, and becomes INTERNAL;
- request bodies are decoded here, not by grpc: a body that is not the method's message
  is the caller's mistake (INVALID_ARGUMENT, one WARNING line per caller per minute at
  most), where grpc's own deserialiser would answer UNKNOWN and log a traceback per call;
- every call is counted (started, and handled by status code) and timed, under
  go-grpc-prometheus's metric names and labels.
Wrapping at registration (not in a server interceptor, which grpc runs for every call
before the handler) keeps the per-call cost to one extra coroutine frame.
"""

from __future__ import annotations

import hmac
import inspect
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeAlias

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from driftloop.kit.errors import DriftloopError, InvalidArgument
from driftloop.kit.grpc_client import ACTOR_HEADER
from driftloop.kit.metrics import (
    GO_CODE_NAMES,
    GRPC_HANDLED,
    GRPC_HANDLING_SECONDS,
    GRPC_STARTED,
)
from driftloop.kit.names import MAX_SHORT_CHARS
from driftloop.kit.throttle import Throttle, caller_of

log = logging.getLogger(__name__)

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"  # generic only in the type stubs
Deserializer: TypeAlias = Callable[[bytes], Any]
UNDECODABLE_LOG_INTERVAL_S = 60.0


@dataclass(frozen=True)
class RpcKind:
    """One of the four kinds of RPC: its go-grpc-prometheus label and grpc's handler maker
    (behavior, request deserializer, response serializer) -> handler."""

    label: str
    make_handler: Callable[[Any, Deserializer | None, Callable[[Any], bytes] | None], Handler]


# Keyed by (request streaming, response streaming): the one place the four kinds are told apart.
RPC_KINDS: dict[tuple[bool, bool], RpcKind] = {
    (False, False): RpcKind("unary", grpc.unary_unary_rpc_method_handler),
    (True, False): RpcKind("client_stream", grpc.stream_unary_rpc_method_handler),
    (False, True): RpcKind("server_stream", grpc.unary_stream_rpc_method_handler),
    (True, True): RpcKind("bidi_stream", grpc.stream_stream_rpc_method_handler),
}


def rpc_kind(handler: Handler) -> RpcKind:
    return RPC_KINDS[bool(handler.request_streaming), bool(handler.response_streaming)]


def behavior_of(handler: Handler) -> Callable[..., Any]:
    """The servicer's function a handler calls, whatever the RPC's kind."""
    behavior = (
        handler.unary_unary or handler.stream_unary or handler.unary_stream or handler.stream_stream
    )
    assert behavior is not None, "a handler without a behavior"
    return behavior


def actor_of(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    """Who is calling: the x-driftloop-actor header (a person or a job), else "admin"."""
    for key, value in context.invocation_metadata() or ():
        if key == ACTOR_HEADER and value:
            return str(value)[:MAX_SHORT_CHARS]
    return "admin"


def to_rpc_status(error: DriftloopError) -> grpc.Status:
    """The gRPC status (code, message and details) that carries a domain error."""
    status = status_pb2.Status(code=code_pb2.Code.Value(error.code.value), message=error.message)
    if isinstance(error, InvalidArgument):
        detail = any_pb2.Any()
        detail.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=error.field, description=error.reason
                    )
                ]
            )
        )
        status.details.append(detail)
    return rpc_status.to_status(status)


class HandlerWrapper:
    def __init__(self, admin_methods: frozenset[str], admin_token: str | None) -> None:
        self._admin_methods = admin_methods
        self._expected_auth = f"Bearer {admin_token}".encode() if admin_token else None
        self._undecodable = Throttle(UNDECODABLE_LOG_INTERVAL_S)

    def wrap(self, method: str, handler: Handler) -> Handler:
        """The handler of `method` ("/pkg.Service/Method") with the concerns above."""
        admin = method in self._admin_methods
        if not _is_async(handler):
            # Servicers are async; a sync method is the generated base class's placeholder.
            return _unimplemented(method, handler)
        service, short = method.lstrip("/").rsplit("/", 1)
        rpc = rpc_kind(handler)
        kind = rpc.label
        started = GRPC_STARTED.labels(kind, service, short)
        timer = GRPC_HANDLING_SECONDS.labels(kind, service, short)
        ok = GRPC_HANDLED.labels(kind, service, short, "OK")

        def count(code: str) -> None:
            GRPC_HANDLED.labels(kind, service, short, GO_CODE_NAMES.get(code, code)).inc()

        async def guard(context: grpc.aio.ServicerContext[Any, Any]) -> None:
            refusal = self._check_token(context.invocation_metadata())
            if refusal is not None:
                count("UNAUTHENTICATED")
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, refusal)

        deserialize, serialize = handler.request_deserializer, handler.response_serializer
        assert deserialize is not None, f"{method} has no request deserializer"
        decode = self._decoder(method, deserialize)

        def decoded_stream(raw: AsyncIterator[bytes], context: Any) -> AsyncIterator[Any]:
            async def requests() -> AsyncIterator[Any]:
                async for body in raw:
                    yield decode(body, context)

            return requests()

        behavior = behavior_of(handler)
        streaming = bool(handler.request_streaming)

        async def unary_response(request: Any, context: Any) -> Any:
            started.inc()
            if admin:
                await guard(context)
            start = time.perf_counter()
            try:
                message = (
                    decoded_stream(request, context) if streaming else decode(request, context)
                )
                response = await behavior(message, context)
            except BaseException as error:
                await _fail(error, context, method, count)
                raise
            finally:
                timer.observe(time.perf_counter() - start)
            ok.inc()
            return response

        async def stream_response(request: Any, context: Any) -> AsyncIterator[Any]:
            started.inc()
            if admin:
                await guard(context)
            start = time.perf_counter()
            try:
                message = (
                    decoded_stream(request, context) if streaming else decode(request, context)
                )
                async for response in behavior(message, context):
                    yield response
            except BaseException as error:
                await _fail(error, context, method, count)
                raise
            finally:
                timer.observe(time.perf_counter() - start)
            ok.inc()

        # Bodies reach the wrapper as bytes (no deserializer): `decode` parses them.
        wrapped = stream_response if handler.response_streaming else unary_response
        return rpc.make_handler(wrapped, None, serialize)

    def _decoder(self, method: str, deserialize: Deserializer) -> Callable[[bytes, Any], Any]:
        """Parse a request body; a body that is not the method's message is INVALID_ARGUMENT."""

        def decode(body: bytes, context: Any) -> Any:
            try:
                return deserialize(body)
            except (DecodeError, RuntimeError, ValueError) as error:
                caller = caller_of(context.peer() or "unknown")
                held_back = self._undecodable.allow(caller)
                if held_back is not None:
                    log.warning(
                        "undecodable request body",
                        extra={
                            "method": method,
                            "caller": caller,
                            "bytes": len(body),
                            "held_back": held_back,
                        },
                    )
                raise InvalidArgument(
                    "request", f"the body ({len(body)} bytes) is not a valid message: {error}"
                ) from None

        return decode

    def _check_token(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
        if self._expected_auth is None:
            return "admin RPCs are disabled: the server has no DRIFTLOOP_ADMIN_TOKEN"
        for key, value in metadata or ():
            if key == "authorization":
                given = value.encode() if isinstance(value, str) else value
                if hmac.compare_digest(given, self._expected_auth):
                    return None
                return "the admin token is wrong"
        return "admin RPC without a token: send 'authorization: Bearer <token>'"


def _unimplemented(method: str, handler: Handler) -> Handler:
    async def abort(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented here")

    # The body is never read: no deserializer.
    return rpc_kind(handler).make_handler(abort, None, handler.response_serializer)


def _is_async(handler: Handler) -> bool:
    """Whether the behavior is a coroutine or async-generator function."""
    behavior = behavior_of(handler)
    return inspect.iscoroutinefunction(behavior) or inspect.isasyncgenfunction(behavior)


async def _fail(
    error: BaseException,
    context: grpc.aio.ServicerContext[Any, Any],
    method: str,
    count: Callable[[str], None],
) -> None:
    """Turn `error` into the call's status; returns only for errors grpc handles itself."""
    if isinstance(error, DriftloopError):
        count(error.code.value)
        await context.abort_with_status(to_rpc_status(error))
    code = context.code()
    if code is not None and code != grpc.StatusCode.OK:
        # The servicer aborted the call itself (context.abort): the status is already set.
        count(code.name if isinstance(code, grpc.StatusCode) else str(code))
        return
    if isinstance(error, Exception):
        count("INTERNAL")
        log.exception("unexpected error in %s", method)
        await context.abort(grpc.StatusCode.INTERNAL, f"internal error in {method}")
    count("CANCELLED")
