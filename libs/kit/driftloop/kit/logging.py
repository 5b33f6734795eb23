"""Structured logging: one JSON object per line on stdout, with context from contextvars.

`configure_logging` is called once by a process entry point. `log_context(model=...,
request_id=...)` adds fields to every record logged inside it, across awaits.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "driftloop_log_context", default=None
)

_STANDARD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Attach `fields` to every log record emitted inside the block."""
    current = _context.get() or {}
    token = _context.set({**current, **fields})
    try:
        yield
    finally:
        _context.reset(token)


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line: time, level, logger, message, context, extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, tz=dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_context.get() or {})
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """A terminal-friendly line with the context appended as key=value pairs."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = dict(_context.get() or {})
        fields.update(
            (key, value)
            for key, value in vars(record).items()
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_")
        )
        if fields:
            line += " " + " ".join(f"{key}={value}" for key, value in fields.items())
        return line


# Messages a library logs at ERROR for a normal, passing condition: a consumer group's
# coordinator is not elected yet while a broker or a new group starts.
_EXPECTED_AT_START = ("GroupCoordinatorNotAvailableError", "NotCoordinatorForGroupError")


class _StartupNoise(logging.Filter):
    """Demotes aiokafka's ERROR about a coordinator that is not ready yet to INFO."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and any(
            name in record.getMessage() for name in _EXPECTED_AT_START
        ):
            record.levelno, record.levelname = logging.INFO, "INFO"
            return logging.getLogger(record.name).isEnabledFor(logging.INFO)
        return True


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Configure the root logger once for the process (replaces earlier handlers)."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiokafka and chDB are chatty at INFO (every connection, every query).
    for noisy in ("aiokafka", "kafka", "chdb"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    coordinator = logging.getLogger("aiokafka.consumer.group_coordinator")
    if not any(isinstance(f, _StartupNoise) for f in coordinator.filters):
        coordinator.addFilter(_StartupNoise())
