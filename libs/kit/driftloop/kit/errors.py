"""Domain errors that know their status, so adapters can map them without guessing.

The core raises these; the gRPC interceptor turns them into status codes (plus a
google.rpc.BadRequest detail naming the field), so a caller's mistake is never INTERNAL.
"""

from __future__ import annotations

import enum

# What an error quotes of a caller's value, and how long a message or field path may get:
# a status travels in the trailers, and clients refuse trailers over 16 KiB (and a long
# value repeated in the message and the BadRequest detail would get there).
MAX_QUOTED_CHARS = 64
MAX_MESSAGE_CHARS = 1024
MAX_FIELD_CHARS = 256


def shown(value: object, limit: int = MAX_QUOTED_CHARS) -> str:
    """A caller's value as an error quotes it: repr, cut to `limit` characters with its
    true length, so no error message grows with the input."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) <= limit:
        return repr(text) if isinstance(value, str) else text
    head = repr(text[:limit]) if isinstance(value, str) else text[:limit]
    return f"{head}... ({len(text):,} characters)"


def clip(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, marked as cut (with its true length)."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


class ErrorCode(enum.Enum):
    """The subset of gRPC status codes a domain error may carry (same names)."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    UNAVAILABLE = "UNAVAILABLE"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    DATA_LOSS = "DATA_LOSS"
    INTERNAL = "INTERNAL"
    UNKNOWN = "UNKNOWN"
    CANCELLED = "CANCELLED"
    UNIMPLEMENTED = "UNIMPLEMENTED"
    ABORTED = "ABORTED"
    OUT_OF_RANGE = "OUT_OF_RANGE"


class DriftloopError(Exception):
    """Base of every error that crosses a service boundary with a precise status."""

    code: ErrorCode = ErrorCode.FAILED_PRECONDITION

    def __init__(self, message: str) -> None:
        message = clip(message, MAX_MESSAGE_CHARS)
        super().__init__(message)
        self.message = message


class InvalidArgument(DriftloopError):
    """The caller sent something wrong; `field` names it (a path such as rows[3].age)."""

    code = ErrorCode.INVALID_ARGUMENT

    def __init__(self, field: str, reason: str) -> None:
        field = clip(field, MAX_FIELD_CHARS)
        reason = clip(reason, MAX_MESSAGE_CHARS - MAX_FIELD_CHARS)
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class NotFound(DriftloopError):
    code = ErrorCode.NOT_FOUND


class AlreadyExists(DriftloopError):
    code = ErrorCode.ALREADY_EXISTS


class FailedPrecondition(DriftloopError):
    code = ErrorCode.FAILED_PRECONDITION


class Unavailable(DriftloopError):
    code = ErrorCode.UNAVAILABLE


class Unauthenticated(DriftloopError):
    code = ErrorCode.UNAUTHENTICATED


class PermissionDenied(DriftloopError):
    code = ErrorCode.PERMISSION_DENIED


class ResourceExhausted(DriftloopError):
    code = ErrorCode.RESOURCE_EXHAUSTED


class DataLoss(DriftloopError):
    """Stored data is corrupt (an artifact that fails its SHA-256 check)."""

    code = ErrorCode.DATA_LOSS


class Upstream(DriftloopError):
    """A status another service answered with, passed on to the caller unchanged."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class CannotStart(Exception):
    """A process cannot start and waiting would not help (a port another process listens
    on, a data folder another process holds, wrong credentials); the message says why and
    what to do, in one line. Not a call's error: it has no status."""
