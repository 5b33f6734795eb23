"""Each workspace package declares what it imports: every third-party distribution and
every driftloop package its code imports is in its pyproject's dependencies, so a package
installed alone (a service's image) has what it runs on, not what a sibling happened to
pull into the shared environment."""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = sorted(path.parent for path in REPO.glob("[ls][ie][br]*/*/pyproject.toml"))
# Imports a package may make without declaring them, each with its reason. Keep it short.
UNDECLARED = {
    # faust_options (imported inside it) serves only the drift sink; the drift service
    # declares faust-streaming, and every other user of the Kafka lib stays without it.
    ("libs/kafka", "faust.auth"): "the drift sink's",
}


def normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(package: Path) -> set[str]:
    project = tomllib.loads((package / "pyproject.toml").read_text())["project"]
    names = {normalised(project["name"])}
    for requirement in project.get("dependencies", []):
        match = re.match(r"[A-Za-z0-9._-]+", requirement)
        assert match, f"{package}: unreadable requirement {requirement!r}"
        names.add(normalised(match.group()))
    return names


@functools.cache
def driftloop_owners() -> dict[str, str]:
    """driftloop.<sub> -> the workspace distribution whose code it is."""
    owners: dict[str, str] = {}
    for package in PACKAGES:
        name = normalised(
            tomllib.loads((package / "pyproject.toml").read_text())["project"]["name"]
        )
        for sub in (package / "driftloop").iterdir():
            if sub.is_dir() and not sub.name.startswith(("_", ".")):
                owners[sub.name] = name
    return owners


@functools.cache
def distribution_files(distribution: str) -> tuple[str, ...]:
    files = importlib.metadata.distribution(distribution).files or []
    return tuple(str(file) for file in files)


@functools.cache
def top_level_owners() -> Mapping[str, list[str]]:
    return importlib.metadata.packages_distributions()


def owners_of(module: str) -> set[str]:
    """The distributions that provide `module` (a third-party import)."""
    parts = module.split(".")
    candidates = top_level_owners().get(parts[0], [])
    if len(candidates) <= 1:
        return {normalised(name) for name in candidates}
    # A namespace package (google): the distributions holding the deepest part imported.
    for depth in range(len(parts), 1, -1):
        prefix = "/".join(parts[:depth])
        holders = {
            normalised(name)
            for name in candidates
            if any(f.startswith((f"{prefix}/", f"{prefix}.py")) for f in distribution_files(name))
        }
        if holders:
            return holders
    return {normalised(name) for name in candidates}


def imported_modules(package: Path) -> dict[str, list[str]]:
    """Absolute module imports of the package's code -> where ("file:line"), those inside a
    function (a lazy import) included: a package installed alone runs those too."""
    found: dict[str, list[str]] = {}
    for path in sorted((package / "driftloop").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                found.setdefault(module, []).append(f"{path.relative_to(REPO)}:{node.lineno}")
    return found


def required(module: str) -> set[str] | None:
    """The distributions any of which satisfies an import of `module`; None for the
    standard library."""
    top = module.split(".")[0]
    if top in sys.stdlib_module_names or top == "__future__":
        return None
    if top == "driftloop":
        sub = module.split(".")[1] if "." in module else ""
        owner = driftloop_owners().get(sub)
        assert owner, f"no workspace package provides {module}"
        return {owner}
    owners = owners_of(module)
    assert owners, f"{module} is imported but no installed distribution provides it"
    return owners


def test_imports_map_to_the_distributions_that_provide_them() -> None:
    assert required("json.decoder") is None and required("__future__") is None
    assert required("yaml") == {"pyyaml"}
    assert required("google.protobuf.message") == {"protobuf"}  # a namespace package
    assert required("google.rpc.status_pb2") == {"googleapis-common-protos"}
    assert required("driftloop.v1.common_pb2") == {"driftloop-api"}
    assert required("driftloop.oip.v2") == {"driftloop-api"}
    assert required("driftloop.stats.cusum") == {"driftloop-stats"}


def test_an_import_inside_a_function_counts() -> None:
    """A lazy import is what the package runs too (a service's --help once imported the
    CLI that way): the kafka lib imports faust.auth inside faust_options only."""
    kafka = imported_modules(REPO / "libs/kafka")
    assert any(place.startswith("libs/kafka/") for place in kafka["faust.auth"])


def test_every_workspace_package_is_checked() -> None:
    names = {package.relative_to(REPO).as_posix() for package in PACKAGES}
    assert {"libs/kit", "libs/api", "services/gateway", "services/shadow"} <= names
    assert len(names) == 13


@pytest.mark.parametrize("package", PACKAGES, ids=lambda path: path.relative_to(REPO).as_posix())
def test_a_package_declares_what_it_imports(package: Path) -> None:
    have = declared(package)
    where = package.relative_to(REPO).as_posix()
    missing = {
        f"{module} (needs {' or '.join(sorted(needed))}; {places[0]})"
        for module, places in imported_modules(package).items()
        if (needed := required(module)) is not None
        and not needed & have
        and (where, module) not in UNDECLARED
    }
    assert not missing, f"{package.name}'s pyproject lacks: {sorted(missing)}"
