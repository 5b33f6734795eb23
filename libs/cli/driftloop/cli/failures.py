"""The CLI's error boundary: which failures are expected, and the one line each becomes.

An expected failure is one a person causes or fixes without reading code: a service that
does not answer, a call it refuses, a bad setting, a missing file, malformed JSON, options
that do not go together, an unreachable broker or ClickHouse server. `main` prints
`driftloop: <what>: <why> (<hint>)` on stderr and exits with status 2. Anything else is a
bug in driftloop and keeps its traceback (and `driftloop --debug ...` shows the traceback
of an expected failure too).

Nothing heavy is imported here: an error from gRPC, aiokafka or ClickHouse can only have
been raised if its library was imported already, so each check looks in sys.modules.
"""

from __future__ import annotations

import json
import os
import sys

# The status of every expected failure, for every command.
EXIT_FAILED = 2


class UsageError(Exception):
    """Options or input that do not go together, found after parsing; the message says
    what to change."""


def explain(error: BaseException) -> str | None:
    """The one line an expected failure becomes (without the `driftloop: ` prefix), or
    None for an unexpected one (a bug: let its traceback show)."""
    for describe in (_usage, _settings, _rpc, _domain, _kafka, _clickhouse, _startup, _files):
        line = describe(error)
        if line is not None:
            return " ".join(line.split())
    return None


def _usage(error: BaseException) -> str | None:
    if isinstance(error, UsageError | TimeoutError):
        return str(error)
    if isinstance(error, json.JSONDecodeError):
        return f"not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"
    return None


def _settings(error: BaseException) -> str | None:
    settings = sys.modules.get("driftloop.kit.settings")
    if settings is not None and isinstance(error, settings.ConfigError):
        return f"configuration: {error} (`driftloop settings` lists every variable)"
    return None


def _rpc(error: BaseException) -> str | None:
    grpc = sys.modules.get("grpc")
    if grpc is None or not isinstance(error, grpc.aio.AioRpcError):
        return None
    errors = sys.modules.get("driftloop.client.errors")
    if errors is not None and isinstance(error, errors.RpcError):
        if isinstance(error, errors.Unavailable):
            return str(error)  # names the service, its address and the variable
        hint = _HINTS.get(error.code().name)
        return f"{error}" + (f" ({hint})" if hint else "")
    return f"{error.code().name}: {error.details()}"


def _domain(error: BaseException) -> str | None:
    """A driftloop error raised on this side (the client's own checks, a training file
    that cannot be read): it names the field and why."""
    errors = sys.modules.get("driftloop.kit.errors")
    if errors is not None and isinstance(error, errors.DriftloopError):
        return str(error)
    return None


_HINTS = {
    "UNAUTHENTICATED": "set DRIFTLOOP_ADMIN_TOKEN to the services' admin token",
    "DEADLINE_EXCEEDED": "raise DRIFTLOOP_TIMEOUT_S, or look at the service's load",
}


def _kafka(error: BaseException) -> str | None:
    kafka_errors = sys.modules.get("aiokafka.errors")
    if kafka_errors is None or not isinstance(error, kafka_errors.KafkaConnectionError):
        return None
    servers = os.environ.get("DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS", "(unset)")
    return (
        f"Kafka unreachable at {servers}: {error} (set DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS; "
        "`driftloop kafka` runs a local broker)"
    )


def _clickhouse(error: BaseException) -> str | None:
    backend = sys.modules.get("driftloop.clickhouse.backend")
    if backend is None or not isinstance(error, backend.ClickHouseError):
        return None
    url = os.environ.get("DRIFTLOOP_CLICKHOUSE_URL")
    if url:
        return f"ClickHouse: the server at {url} (DRIFTLOOP_CLICKHOUSE_URL): {error}"
    if "DRIFTLOOP_CLICKHOUSE_PATH" in str(error):  # it says what to set already
        return f"ClickHouse: {error}"
    return f"ClickHouse: {error} (DRIFTLOOP_CLICKHOUSE_PATH sets the embedded engine's folder)"


# Errors that say in one line why something cannot start (the local broker, a service of
# `up` or the demo) and what to do: (module, class).
_CANNOT_START = (
    ("driftloop.kafka.local_broker", "BrokerError"),
    ("driftloop.kit.errors", "CannotStart"),
)


def _startup(error: BaseException) -> str | None:
    for module, name in _CANNOT_START:
        cls = getattr(sys.modules.get(module), name, None)
        if isinstance(cls, type) and isinstance(error, cls):
            return str(error)
    return None


def _files(error: BaseException) -> str | None:
    if isinstance(error, OSError) and error.filename is not None:
        why = error.strerror or str(error)
        # A path from a setting (DRIFTLOOP_TLS_CA_FILE ...): say which one.
        named = [
            name
            for name, value in os.environ.items()
            if name.startswith("DRIFTLOOP_") and value == str(error.filename)
        ]
        hint = f" (set by {', '.join(sorted(named))})" if named else ""
        return f"{error.filename}: {why}{hint}"
    if isinstance(error, ConnectionError):
        return f"connection failed: {error}"
    return None
