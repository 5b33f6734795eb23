"""`Client`: the driftloop client without asyncio, for scripts, notebooks and label jobs.

    with Client.from_env() as client:
        client.set_alias("churn", "champion", "3")
        answer = client.serve("churn", {"age": 41.0, "plan": "pro"}, request_id="r-1")
        client.publish_label("r-1", "yes")

Every method of DriftloopClient is here with the same arguments (and types), returning
its result (not a coroutine) and raising the same typed errors (driftloop.client.errors).

How: the client owns one event loop in one daemon thread, and runs each call there. That
keeps its gRPC channels (bound to the loop that made them) alive between calls, and works
where asyncio.run cannot: inside a notebook, or from code already running a loop. The
thread ends at `close()` (or the end of the `with` block).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, TypeVar

from driftloop.client.client import ClientSettings, DriftloopClient
from driftloop.kit.settings import KafkaSettings, load_settings

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


def blocking(
    method: Callable[Concatenate[DriftloopClient, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[Client, P], R]:
    """DriftloopClient's `method` as a Client method: the same arguments and docstring,
    run on the client's loop; returns its result."""

    def call(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._run(method(self._client, *args, **kwargs))

    call.__name__ = call.__qualname__ = method.__name__
    call.__doc__ = method.__doc__
    return call


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

        try:
            self._client = self._run(make())
        except BaseException:  # a TLS file that cannot be read: no thread left behind
            self._stop_loop()
            raise

    @classmethod
    def from_env(cls) -> Client:
        """Configured from the environment, as DriftloopClient.from_env and the CLI are."""
        return cls(load_settings(ClientSettings), load_settings(KafkaSettings))

    def _run(self, work: Coroutine[Any, Any, T]) -> T:
        if self._closed:
            work.close()
            raise RuntimeError("the client is closed")
        return asyncio.run_coroutine_threadsafe(work, self._loop).result()

    # Every public method of DriftloopClient but close (a unit test checks none is missing).
    ab_report = blocking(DriftloopClient.ab_report)
    alias_history = blocking(DriftloopClient.alias_history)
    analyze_canary = blocking(DriftloopClient.analyze_canary)
    baseline = blocking(DriftloopClient.baseline)
    drift_alerts = blocking(DriftloopClient.drift_alerts)
    drift_report = blocking(DriftloopClient.drift_report)
    get_version = blocking(DriftloopClient.get_version)
    lineage = blocking(DriftloopClient.lineage)
    list_versions = blocking(DriftloopClient.list_versions)
    model_history = blocking(DriftloopClient.model_history)
    predict = blocking(DriftloopClient.predict)
    predict_batch = blocking(DriftloopClient.predict_batch)
    promote = blocking(DriftloopClient.promote)
    publish_label = blocking(DriftloopClient.publish_label)
    register = blocking(DriftloopClient.register)
    register_artifact = blocking(DriftloopClient.register_artifact)
    register_from_data = blocking(DriftloopClient.register_from_data)
    register_trained = blocking(DriftloopClient.register_trained)
    resolve_alias = blocking(DriftloopClient.resolve_alias)
    retrain_decisions = blocking(DriftloopClient.retrain_decisions)
    retrain_run = blocking(DriftloopClient.retrain_run)
    retrain_runs = blocking(DriftloopClient.retrain_runs)
    rollback = blocking(DriftloopClient.rollback)
    routing_policy = blocking(DriftloopClient.routing_policy)
    serve = blocking(DriftloopClient.serve)
    serve_batch = blocking(DriftloopClient.serve_batch)
    set_alias = blocking(DriftloopClient.set_alias)
    set_routing_policy = blocking(DriftloopClient.set_routing_policy)
    set_training_policy = blocking(DriftloopClient.set_training_policy)
    shadow_comparison = blocking(DriftloopClient.shadow_comparison)
    shadow_status = blocking(DriftloopClient.shadow_status)
    start_rollout = blocking(DriftloopClient.start_rollout)
    training_policy = blocking(DriftloopClient.training_policy)
    trigger_retrain = blocking(DriftloopClient.trigger_retrain)
    upload_artifact = blocking(DriftloopClient.upload_artifact)
    wait_for_run = blocking(DriftloopClient.wait_for_run)

    def close(self) -> None:
        """Close the channels (and the label producer), then stop the loop's thread."""
        if self._closed:
            return
        try:
            self._run(self._client.close())
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
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
