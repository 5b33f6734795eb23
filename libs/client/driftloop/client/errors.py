"""The client's errors: one class per gRPC status, each naming the service, its address and
the variable that sets it, and (for INVALID_ARGUMENT) the field the server refused.

Every error is still a `grpc.aio.AioRpcError` with the server's code and details, so code
written against the raw status (`error.code() == grpc.StatusCode.NOT_FOUND`) keeps working;
new code catches the class (`except NotFound`) and reads `error.field`.
"""

from __future__ import annotations

from typing import ClassVar

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

# The variable that sets each service's address (ClientSettings), for the hint in messages.
TARGET_VARIABLES = {
    "registry": "DRIFTLOOP_REGISTRY_TARGET",
    "retrainer": "DRIFTLOOP_REGISTRY_TARGET",
    "inference": "DRIFTLOOP_INFERENCE_TARGET",
    "gateway": "DRIFTLOOP_GATEWAY_TARGET",
    "drift": "DRIFTLOOP_DRIFT_TARGET",
    "shadow": "DRIFTLOOP_SHADOW_TARGET",
}


class RpcError(grpc.aio.AioRpcError):
    """A call a driftloop service refused or could not answer.

    `service` ("registry", "gateway", ...), `target` (the address called), `field` (the
    request field a BadRequest detail names, "" when none) and `reason` (the server's text)
    come with every error; `str(error)` is one line saying all of it.
    """

    status: ClassVar[grpc.StatusCode] = grpc.StatusCode.UNKNOWN

    def __init__(self, error: grpc.aio.AioRpcError, service: str, target: str) -> None:
        super().__init__(
            error.code(),
            error.initial_metadata(),
            error.trailing_metadata(),
            error.details(),
            error.debug_error_string(),
        )
        self.service = service
        self.target = target
        self.reason = error.details() or error.code().name
        self.field = bad_request_field(error)

    @property
    def variable(self) -> str:
        """The environment variable that sets this service's address."""
        return TARGET_VARIABLES.get(self.service, "")

    def __str__(self) -> str:
        return f"{self.service} at {self.target}: {self.code().name}: {self.reason}"


class InvalidArgument(RpcError):
    status = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(RpcError):
    status = grpc.StatusCode.NOT_FOUND


class AlreadyExists(RpcError):
    status = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(RpcError):
    """A compare-and-set lost (an alias or policy moved meanwhile), or the state forbids it."""

    status = grpc.StatusCode.FAILED_PRECONDITION


class Unauthenticated(RpcError):
    """An admin call without the right DRIFTLOOP_ADMIN_TOKEN."""

    status = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(RpcError):
    status = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(RpcError):
    status = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(RpcError):
    """The service did not answer: not running, or not at this address."""

    status = grpc.StatusCode.UNAVAILABLE

    def __str__(self) -> str:
        where = f"set {self.variable}" if self.variable else "is it running?"
        return f"{self.service} unreachable at {self.target}: {self.reason} ({where})"


class DeadlineExceeded(RpcError):
    status = grpc.StatusCode.DEADLINE_EXCEEDED


class Unimplemented(RpcError):
    status = grpc.StatusCode.UNIMPLEMENTED


class Internal(RpcError):
    """A bug on the server's side (it logged the traceback)."""

    status = grpc.StatusCode.INTERNAL


ERRORS: dict[grpc.StatusCode, type[RpcError]] = {
    cls.status: cls
    for cls in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        FailedPrecondition,
        Unauthenticated,
        PermissionDenied,
        ResourceExhausted,
        Unavailable,
        DeadlineExceeded,
        Unimplemented,
        Internal,
    )
}


def bad_request_field(error: grpc.aio.AioRpcError) -> str:
    """The first field a google.rpc.BadRequest detail of the status names, else ""."""
    try:
        status = rpc_status.from_call(error)  # type: ignore[arg-type]  # an aio error is a Call
    except ValueError:  # details that contradict the code or message: ignore them
        return ""
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            request = error_details_pb2.BadRequest()
            detail.Unpack(request)
            for violation in request.field_violations:
                return str(violation.field)
    return ""


def typed(error: grpc.aio.AioRpcError, service: str, target: str) -> RpcError:
    """The error as its status's class (RpcError itself for a status without one)."""
    if isinstance(error, RpcError):
        return error
    return ERRORS.get(error.code(), RpcError)(error, service, target)
