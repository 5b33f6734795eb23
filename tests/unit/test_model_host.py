"""The inference service's model host, with an in-memory registry and loader."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from driftloop.inference.host import ModelHost
from driftloop.kit.errors import DataLoss, NotFound, Unavailable
from driftloop.models.artifacts import ArtifactStore
from driftloop.models.loading import VersionSpec
from driftloop.models.schema import Feature, Model, OutputKind, Prediction, Row, Schema

SCHEMA = Schema((Feature("x", "number"),))


class Constant:
    inline = True

    def __init__(self, value: float) -> None:
        self.schema = SCHEMA
        self.output_kind: OutputKind = "regression"
        self.value = value

    def predict(self, rows: Sequence[Row]) -> list[Prediction]:
        return [Prediction(value=self.value) for _ in rows]


class FakeRegistry:
    def __init__(self) -> None:
        self.versions = {"1", "2", "3"}
        self.aliases = {"champion": "1"}
        self.asked: list[str] = []

    async def describe(self, model: str, version_or_alias: str) -> VersionSpec:
        self.asked.append(version_or_alias)
        version = self.aliases.get(version_or_alias, version_or_alias)
        if model != "m" or version not in self.versions:
            raise NotFound(f"{model} has no {version_or_alias}")
        return VersionSpec(model, version, "fake", "0" * 64, SCHEMA, "regression")


class Loader:
    def __init__(self) -> None:
        self.loads: list[str] = []
        self.gate = asyncio.Event()
        self.fail: set[str] = set()

    def __call__(self, spec: VersionSpec, store: ArtifactStore) -> Model:
        self.loads.append(spec.version)
        if spec.version in self.fail:
            raise DataLoss(f"artifact of v{spec.version} failed verification")
        return Constant(float(spec.version))


def host(registry: FakeRegistry, loader: Loader, **options: float) -> ModelHost:
    store: ArtifactStore = None  # type: ignore[assignment]  # the fake loader never reads it
    return ModelHost(registry, store, loader=loader, **options)  # type: ignore[arg-type]


async def test_versions_load_once_and_aliases_resolve() -> None:
    registry, loader = FakeRegistry(), Loader()
    models = host(registry, loader)
    hosted, model = await models.model("m", "champion")
    assert hosted.version == "1" and model.predict([{"x": 0.0}])[0].value == 1.0
    await models.model("m", "champion")
    await models.model("m", "1")
    assert loader.loads == ["1"]
    assert registry.asked.count("champion") == 1  # cached
    await models.close()


async def test_unknown_versions_are_not_found_and_leave_nothing_behind() -> None:
    models = host(FakeRegistry(), Loader())
    with pytest.raises(NotFound):
        await models.model("m", "9")
    with pytest.raises(NotFound):
        await models.model("m", "staging")
    assert models.statuses() == []
    await models.close()


async def test_a_failed_load_keeps_its_error_until_retried() -> None:
    registry, loader = FakeRegistry(), Loader()
    loader.fail.add("2")
    models = host(registry, loader, retry_after_s=3600)
    for _ in range(2):
        with pytest.raises(DataLoss):
            await models.model("m", "2")
    assert loader.loads == ["2"]  # not retried on every request
    assert [(h.version, h.state) for h in models.statuses()] == [("2", "failed")]
    loader.fail.clear()
    reloaded = await models.load("m", "2")  # an explicit load retries at once
    assert reloaded.state == "ready"
    await models.close()


async def test_requests_get_unavailable_while_a_version_loads() -> None:
    registry = FakeRegistry()
    release = asyncio.Event()

    class SlowRegistry(FakeRegistry):
        async def describe(self, model: str, version_or_alias: str) -> VersionSpec:
            await release.wait()
            return await registry.describe(model, version_or_alias)

    models = host(SlowRegistry(), Loader(), load_wait_s=0.05)
    with pytest.raises(Unavailable, match="still loading"):
        await models.model("m", "3")
    assert [(h.version, h.state) for h in models.statuses()] == [("3", "loading")]
    release.set()
    hosted, _ = await models.model("m", "3")
    assert hosted.state == "ready"
    await models.close()


async def test_least_recently_used_versions_are_unloaded() -> None:
    models = host(FakeRegistry(), Loader(), max_loaded=2)
    await models.model("m", "1")
    await models.model("m", "2")
    await models.model("m", "1")  # 2 is now the least recently used
    await models.model("m", "3")
    assert sorted(h.version for h in models.statuses()) == ["1", "3"]
    await models.close()


async def test_an_alias_move_updates_the_cache_and_warms_the_new_version() -> None:
    registry, loader = FakeRegistry(), Loader()
    models = host(registry, loader)
    await models.model("m", "champion")
    models.alias_moved("m", "champion", "2")
    models.alias_moved("m", "challenger", "3")  # never asked for: ignored
    # Warmed before anyone asks for it: v2 becomes ready with no request made.
    deadline = asyncio.get_running_loop().time() + 5
    while [h.state for h in models.statuses("m") if h.version == "2"] != ["ready"]:
        assert asyncio.get_running_loop().time() < deadline, "the new version was not warmed"
        await asyncio.sleep(0.01)
    assert loader.loads == ["1", "2"]
    hosted, _ = await models.model("m", "champion")
    assert hosted.version == "2"
    assert loader.loads == ["1", "2"]  # the request found it loaded: no second load, no 3
    assert registry.asked.count("champion") == 1  # the move updated the cached alias
    await models.close()
