"""What every `python -m driftloop.<service>` does around its service: settings errors,
logging, running until SIGTERM or Ctrl-C, and a clean stop."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from driftloop.kit.errors import CannotStart
from driftloop.kit.grpc_server import wait_for_signal
from driftloop.kit.logging import configure_logging
from driftloop.kit.settings import ConfigError, LoggingSettings, load_settings


class Service(Protocol):
    async def start(self) -> int: ...

    async def stop(self, grace: float | None = None) -> None: ...


async def serve_until_signal(service: Service, log: logging.Logger) -> None:
    """Start the service, wait for SIGTERM/SIGINT, stop it (gracefully) whatever happens."""
    try:
        await service.start()
        received = await wait_for_signal()
        log.info("received %s, shutting down", received.name)
    finally:
        await service.stop()


def run_main(
    name: str,
    run: Callable[[], Coroutine[Any, Any, None]],
    usage: Callable[[], str] | None = None,
) -> int:
    """Configure logging from the environment and run. `-h`/`--help` prints `usage()` (the
    variables the service reads). A bad setting, or a start that waiting cannot help, is
    one line on stderr and exit code 2, not a traceback."""
    if usage is not None and any(arg in ("-h", "--help") for arg in sys.argv[1:]):
        print(usage())
        return 0
    try:
        logging_settings = load_settings(LoggingSettings)
        configure_logging(logging_settings.level, logging_settings.format)
        asyncio.run(run())
    except (ConfigError, CannotStart) as error:
        print(f"{name}: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C while it waited for a dependency
        return 130
    return 0
