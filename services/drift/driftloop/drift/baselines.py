"""Model versions' baselines from the registry, fetched once per version and cached
(a version's baseline is frozen at registration, so the cache never goes stale)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from driftloop.client.registry import RegistryClient
from driftloop.models.baseline import Baseline
from driftloop.models.convert import OUTPUT_KIND_NAMES, baseline_from_proto


@dataclass(frozen=True)
class VersionInfo:
    model: str
    version: str
    output_kind: str
    baseline: Baseline


class BaselineSource(Protocol):
    async def get(self, model: str, version: str) -> VersionInfo: ...


class RegistryBaselines:
    def __init__(self, registry: RegistryClient) -> None:
        self._registry = registry
        self._cache: dict[tuple[str, str], VersionInfo] = {}

    async def get(self, model: str, version: str) -> VersionInfo:
        """The version's baseline; NOT_FOUND and other registry errors pass through."""
        cached = self._cache.get((model, version))
        if cached is not None:
            return cached
        record = await self._registry.get(model, version)
        info = VersionInfo(
            model=record.model,
            version=record.version,
            output_kind=OUTPUT_KIND_NAMES.get(record.output_kind, "regression"),
            baseline=baseline_from_proto(record.baseline),
        )
        # Aliases move; only a concrete version number is cached.
        if record.version == version:
            self._cache[(model, version)] = info
        return info
