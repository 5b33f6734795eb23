"""The model host: which versions are loaded, loading or failed, and alias resolution.

Transport-free. A request names a version ("3") or an alias ("champion"); aliases are
resolved through the registry and cached (model-events keep the cache fresh; a TTL bounds
the staleness if events stop). A version is loaded once, in a worker thread, from the
verified artifact; requests wait for a load up to `load_wait_s`, then get UNAVAILABLE. A
failed load keeps its error (a tampered artifact stays refused) and is retried after
`retry_after_s` or on an explicit load. Beyond `max_loaded`, the least recently used
version is unloaded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from driftloop.inference.coalescing import Coalescer
from driftloop.kit.errors import DriftloopError, FailedPrecondition, NotFound, Unavailable
from driftloop.kit.names import check_name, check_version_ref, is_version_number
from driftloop.models.artifacts import ArtifactStore
from driftloop.models.loading import VersionSpec, load_model
from driftloop.models.schema import Model

log = logging.getLogger(__name__)

State = Literal["loading", "ready", "failed"]
Loader = Callable[[VersionSpec, ArtifactStore], Model]


class VersionSource(Protocol):
    """Where version records come from (the registry)."""

    async def describe(self, model: str, version_or_alias: str) -> VersionSpec: ...


@dataclass
class Hosted:
    model_name: str
    version: str
    state: State = "loading"
    model: Model | None = None
    # Shares calls among single-row requests to a model that predicts in a worker thread.
    coalescer: Coalescer | None = None
    spec: VersionSpec | None = None
    error: DriftloopError | None = None
    failed_at: float = 0.0
    last_used: float = field(default_factory=time.monotonic)
    done: asyncio.Event = field(default_factory=asyncio.Event)


class ModelHost:
    def __init__(
        self,
        source: VersionSource,
        artifacts: ArtifactStore,
        *,
        max_loaded: int = 16,
        load_wait_s: float = 10.0,
        retry_after_s: float = 30.0,
        alias_ttl_s: float = 60.0,
        loader: Loader = load_model,
    ) -> None:
        self._source = source
        self._artifacts = artifacts
        self._max_loaded = max_loaded
        self._load_wait_s = load_wait_s
        self._retry_after_s = retry_after_s
        self._alias_ttl_s = alias_ttl_s
        self._loader = loader
        self._hosted: dict[tuple[str, str], Hosted] = {}
        self._aliases: dict[tuple[str, str], tuple[str, float]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def model(self, name: str, ref: str) -> tuple[Hosted, Model]:
        """The ready model for `name` at version or alias `ref` (loading it if needed)."""
        # Only valid version numbers are hosted, and they resolve to themselves: the common
        # case is answered without awaiting `resolve`.
        hosted = self._hosted.get((name, ref))
        version = ref if hosted is not None else await self.resolve(name, ref)
        if hosted is None:
            hosted = self._hosted.get((name, version))
        if hosted is not None and hosted.model is not None:
            hosted.last_used = time.monotonic()
            return hosted, hosted.model
        hosted = await self._wait(self._ensure(name, version))
        assert hosted.model is not None
        return hosted, hosted.model

    async def resolve(self, name: str, ref: str) -> str:
        if (name, ref) in self._hosted:  # only valid version numbers are ever hosted
            return ref
        cached = self._aliases.get((name, ref))
        if cached is not None and time.monotonic() - cached[1] < self._alias_ttl_s:
            return cached[0]
        check_name("model.model", name, "model name")
        check_version_ref("model.version", ref)
        if is_version_number(ref):
            return ref
        spec = await self._source.describe(name, ref)
        self._aliases[(name, ref)] = (spec.version, time.monotonic())
        return spec.version

    async def load(self, name: str, ref: str) -> Hosted:
        """Load (or reload a failed) version and wait for the outcome."""
        version = await self.resolve(name, ref)
        hosted = self._hosted.get((name, version))
        if hosted is not None and hosted.state == "failed":
            del self._hosted[(name, version)]
        hosted = self._ensure(name, version)
        await hosted.done.wait()
        if isinstance(hosted.error, NotFound):  # keep no entry for what does not exist
            self._hosted.pop((name, version), None)
        return hosted

    def unload(self, name: str, version: str) -> Hosted:
        hosted = self._hosted.pop((name, version), None)
        if hosted is None:
            raise NotFound(f"{name} v{version} is not loaded")
        return hosted

    def alias_moved(self, name: str, alias: str, version: str) -> None:
        """A model-event: update a cached alias, and warm the version it now points to."""
        if (name, alias) in self._aliases:
            self._aliases[(name, alias)] = (version, time.monotonic())
            self._ensure(name, version)

    def statuses(self, name: str = "") -> list[Hosted]:
        return [h for (model, _), h in sorted(self._hosted.items()) if not name or model == name]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for hosted in self._hosted.values():
            if hosted.coalescer is not None:
                await hosted.coalescer.close()

    def _ensure(self, name: str, version: str) -> Hosted:
        hosted = self._hosted.get((name, version))
        if hosted is not None:
            if (
                hosted.state == "failed"
                and time.monotonic() - hosted.failed_at > self._retry_after_s
            ):
                del self._hosted[(name, version)]
            else:
                return hosted
        hosted = Hosted(name, version)
        self._hosted[(name, version)] = hosted
        task = asyncio.create_task(self._load(hosted), name=f"load {name} v{version}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return hosted

    async def _load(self, hosted: Hosted) -> None:
        started = time.monotonic()
        try:
            spec = await self._source.describe(hosted.model_name, hosted.version)
            model = await asyncio.to_thread(self._loader, spec, self._artifacts)
        except DriftloopError as error:
            hosted.state, hosted.error, hosted.failed_at = "failed", error, time.monotonic()
            # A version that does not exist is a caller's mistake, not a server error.
            level = logging.INFO if isinstance(error, NotFound) else logging.ERROR
            log.log(
                level, "loading %s v%s failed: %s", hosted.model_name, hosted.version, error.message
            )
        except Exception as error:  # a flavor may raise anything; keep it as the reason
            hosted.state, hosted.failed_at = "failed", time.monotonic()
            hosted.error = FailedPrecondition(
                f"{hosted.model_name} v{hosted.version} could not be loaded: "
                f"{type(error).__name__}: {error}"
            )
            log.exception("loading %s v%s failed", hosted.model_name, hosted.version)
        else:
            hosted.spec, hosted.model, hosted.state = spec, model, "ready"
            hosted.coalescer = None if model.inline else Coalescer(model)
            log.info(
                "loaded %s v%s",
                hosted.model_name,
                hosted.version,
                extra={"flavor": spec.flavor, "seconds": round(time.monotonic() - started, 3)},
            )
            self._evict()
        finally:
            hosted.done.set()

    async def _wait(self, hosted: Hosted) -> Hosted:
        if not hosted.done.is_set():
            try:
                await asyncio.wait_for(hosted.done.wait(), self._load_wait_s)
            except TimeoutError:
                raise Unavailable(
                    f"{hosted.model_name} v{hosted.version} is still loading; retry shortly"
                ) from None
        if hosted.state == "failed":
            assert hosted.error is not None
            if isinstance(hosted.error, NotFound):  # keep no entry for what does not exist
                self._hosted.pop((hosted.model_name, hosted.version), None)
            raise hosted.error
        return hosted

    def _evict(self) -> None:
        ready = [h for h in self._hosted.values() if h.state == "ready"]
        for hosted in sorted(ready, key=lambda h: h.last_used)[
            : max(0, len(ready) - self._max_loaded)
        ]:
            del self._hosted[(hosted.model_name, hosted.version)]
            log.info("unloaded %s v%s (least recently used)", hosted.model_name, hosted.version)
