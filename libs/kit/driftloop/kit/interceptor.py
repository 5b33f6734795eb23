"""One server interceptor for the cross-cutting concerns of every RPC.

- admin methods (marked `option (driftloop.v1.admin) = true` in the protos) need the
  bearer token, compared in constant time;
- domain errors become their status code, with a google.rpc.BadRequest detail for
  INVALID_ARGUMENT so clients in any language can read the field and the reason;
- an unexpected exception is logged once, with its traceback, and becomes INTERNAL;
- every call is counted and timed.
One interceptor rather than three keeps the per-call cost to a single wrapper.
"""

from __future__ import annotations

import hmac
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from driftloop.kit.errors import DriftloopError, InvalidArgument
from driftloop.kit.metrics import GRPC_HANDLED, GRPC_HANDLING_SECONDS

log = logging.getLogger(__name__)

Behavior = Callable[..., Any]


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


class ServerInterceptor(grpc.aio.ServerInterceptor):
    def __init__(
        self, service_name: str, admin_methods: frozenset[str], admin_token: str | None
    ) -> None:
        self._service = service_name
        self._admin_methods = admin_methods
        self._expected_auth = f"Bearer {admin_token}".encode() if admin_token else None

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method: str = handler_call_details.method
        refusal = None
        if method in self._admin_methods:
            refusal = self._check_token(handler_call_details.invocation_metadata)
        if refusal is None and not _is_async(handler):
            return handler  # a sync servicer (none of ours): grpc runs it as it is
        return _wrap(handler, self._service, method, refusal)

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


def _wrap(
    handler: grpc.RpcMethodHandler[Any, Any], service: str, method: str, refusal: str | None
) -> grpc.RpcMethodHandler[Any, Any]:
    short_method = method.rsplit("/", 1)[-1]
    timer = GRPC_HANDLING_SECONDS.labels(service, short_method)

    def count(code: str) -> None:
        GRPC_HANDLED.labels(service, short_method, code).inc()

    async def guard(context: grpc.aio.ServicerContext[Any, Any]) -> None:
        if refusal is not None:
            count("UNAUTHENTICATED")
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, refusal)

    async def unary_response(behavior: Behavior, request: Any, context: Any) -> Any:
        await guard(context)
        start = time.perf_counter()
        try:
            response = await behavior(request, context)
        except BaseException as error:
            await _fail(error, context, method, count)
            raise
        finally:
            timer.observe(time.perf_counter() - start)
        count("OK")
        return response

    async def stream_response(behavior: Behavior, request: Any, context: Any) -> AsyncIterator[Any]:
        await guard(context)
        start = time.perf_counter()
        try:
            async for response in behavior(request, context):
                yield response
        except BaseException as error:
            await _fail(error, context, method, count)
            raise
        finally:
            timer.observe(time.perf_counter() - start)
        count("OK")

    if handler.unary_unary is not None:
        unary_unary_behavior = handler.unary_unary

        async def unary_unary(request: Any, context: Any) -> Any:
            return await unary_response(unary_unary_behavior, request, context)

        return grpc.unary_unary_rpc_method_handler(
            unary_unary, handler.request_deserializer, handler.response_serializer
        )
    if handler.stream_unary is not None:
        stream_unary_behavior = handler.stream_unary

        async def stream_unary(requests: Any, context: Any) -> Any:
            return await unary_response(stream_unary_behavior, requests, context)

        return grpc.stream_unary_rpc_method_handler(
            stream_unary, handler.request_deserializer, handler.response_serializer
        )
    if handler.unary_stream is not None:
        unary_stream_behavior = handler.unary_stream

        async def unary_stream(request: Any, context: Any) -> AsyncIterator[Any]:
            async for response in stream_response(unary_stream_behavior, request, context):
                yield response

        return grpc.unary_stream_rpc_method_handler(
            unary_stream, handler.request_deserializer, handler.response_serializer
        )
    stream_stream_behavior = handler.stream_stream
    assert stream_stream_behavior is not None, f"{method} has no behavior"

    async def stream_stream(requests: Any, context: Any) -> AsyncIterator[Any]:
        async for response in stream_response(stream_stream_behavior, requests, context):
            yield response

    return grpc.stream_stream_rpc_method_handler(
        stream_stream, handler.request_deserializer, handler.response_serializer
    )


def _is_async(handler: grpc.RpcMethodHandler[Any, Any]) -> bool:
    """grpc.aio runs sync behaviors in threads; the wrappers here are for async ones only."""
    behavior = (
        handler.unary_unary or handler.stream_unary or handler.unary_stream or handler.stream_stream
    )
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
