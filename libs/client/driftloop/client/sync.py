"""`Client`: the driftloop client without asyncio, for scripts, notebooks and label jobs.

    with Client.from_env() as client:
        client.set_alias("churn", "champion", "3")
        answer = client.serve("churn", {"age": 41.0, "plan": "pro"}, request_id="r-1")
        client.publish_label("r-1", "yes")

Every method of DriftloopClient is here with the same arguments, returning its result
(not a coroutine) and raising the same typed errors (driftloop.client.errors).

How: the client owns one event loop in one daemon thread, and runs each call there. That
keeps its gRPC channels (bound to the loop that made them) alive between calls, and works
where asyncio.run cannot: inside a notebook, or from code already running a loop. The
thread ends at `close()` (or the end of the `with` block).
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, TypeVar

from driftloop.client.client import ClientSettings, DriftloopClient
from driftloop.kit.settings import KafkaSettings, load_settings

T = TypeVar("T")


class Client:
    """DriftloopClient's API as blocking calls (see the module docstring)."""

    def __init__(self, settings: ClientSettings, kafka: KafkaSettings | None = None) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="driftloop-client", daemon=True
        )
        self._thread.start()
        self._closed = False

        async def make() -> DriftloopClient:
            return DriftloopClient(settings, kafka)

        self._client = self._run(make())

    @classmethod
    def from_env(cls) -> Client:
        """Configured from the environment, as DriftloopClient.from_env and the CLI are."""
        return cls(load_settings(ClientSettings), load_settings(KafkaSettings))

    def _run(self, work: Coroutine[Any, Any, T]) -> T:
        if self._closed:
            work.close()
            raise RuntimeError("the client is closed")
        return asyncio.run_coroutine_threadsafe(work, self._loop).result()

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.__dict__.get("_client"), name, None)
        if name.startswith("_") or not inspect.iscoroutinefunction(method):
            raise AttributeError(f"{type(self).__name__} has no method {name!r}")

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._run(method(*args, **kwargs))

        call.__name__ = name
        call.__doc__ = method.__doc__
        return call

    def __dir__(self) -> list[str]:
        own = set(super().__dir__())
        return sorted(own | {n for n in dir(DriftloopClient) if not n.startswith("_")})

    def close(self) -> None:
        """Close the channels (and the label producer), then stop the loop's thread."""
        if self._closed:
            return
        try:
            self._run(self._client.close())
        finally:
            self._closed = True
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
