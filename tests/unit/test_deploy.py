"""docker-compose.yml and deploy/ checked against the code (no Docker engine runs here)."""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml
from pydantic_settings import BaseSettings

import driftloop
from driftloop.cli import configuration
from driftloop.cli.__main__ import build_parser
from driftloop.cli.configuration import known_variables
from driftloop.kit.settings import GrpcServerSettings, variables

REPO = Path(__file__).resolve().parents[2]
SERVICES = ("GATEWAY", "INFERENCE", "SHADOW", "DRIFT", "RETRAINER")
STALE_TABLE = (
    "README.md's configuration table is not the one the settings classes make: run "
    f"`{configuration.REGENERATE}` (driftloop settings --readme README.md) and commit README.md"
)


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return loaded


def test_every_driftloop_variable_in_compose_is_a_real_setting() -> None:
    known = known_variables()
    for name, service in compose()["services"].items():
        for variable in service.get("environment") or {}:
            if variable.startswith("DRIFTLOOP_"):
                assert variable in known, f"{name}: {variable} is not read by any setting"


def test_every_driftloop_command_in_compose_parses() -> None:
    parser = build_parser()
    commands = 0
    for service in compose()["services"].values():
        if service.get("image", "").startswith("driftloop"):
            command = service["command"]
            if command[:2] == ["python", "-m"]:
                assert importlib.util.find_spec(f"{command[2]}.__main__") is not None, command
                commands += 1
                continue
            script = command[-1] if command[:2] == ["sh", "-c"] else shlex.join(command)
            for part in re.split(r"&&|;", script):
                words = shlex.split(part)
                assert words[0] == "driftloop", f"not a driftloop command: {part}"
                parser.parse_args(words[1:])
                commands += 1
    assert commands >= 2


def test_images_match_the_versions_used_here() -> None:
    services = compose()["services"]
    pom = (REPO / "deploy" / "kafka" / "pom.xml").read_text()
    kafka_version = re.search(r"<kafka.version>(.+)</kafka.version>", pom)
    assert kafka_version is not None
    assert services["kafka"]["image"] == f"apache/kafka:{kafka_version[1]}"
    makefile = (REPO / "Makefile").read_text()
    uv_version = re.search(r"^UV_VERSION := (\S+)$", makefile, re.MULTILINE)
    assert uv_version is not None
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    assert f"uv=={uv_version[1]}" in dockerfile
    # Prometheus: the release whose promtool checks deploy/prometheus (make setup builds it)
    prometheus_version = re.search(r"^PROMETHEUS_VERSION := (\S+)$", makefile, re.MULTILINE)
    assert prometheus_version is not None
    assert services["prometheus"]["image"] == f"prom/prometheus:v{prometheus_version[1]}"


def test_dockerfile_copies_what_exists() -> None:
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    for line in dockerfile.splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (REPO / source).exists(), f"COPY {source}: no such path"


def test_the_readme_configuration_table_is_the_generated_one() -> None:
    readme = (REPO / "README.md").read_text()
    assert configuration.block(readme) == configuration.markdown(), STALE_TABLE


def settings_classes() -> Iterator[type[BaseSettings]]:
    """Every settings class of driftloop's code (each module imported, the generated API's
    excepted)."""
    for module in pkgutil.walk_packages(driftloop.__path__, "driftloop."):
        if not module.name.startswith("driftloop.v1"):
            importlib.import_module(module.name)
    found, pending = set[type[BaseSettings]](), [BaseSettings]
    while pending:
        for cls in pending.pop().__subclasses__():
            pending.append(cls)
            if cls.__module__.startswith("driftloop."):
                found.add(cls)
    return iter(sorted(found, key=lambda cls: f"{cls.__module__}.{cls.__name__}"))


def test_every_variable_a_settings_class_reads_is_in_the_table() -> None:
    known = known_variables()
    for cls in settings_classes():
        if cls is GrpcServerSettings:
            continue  # read only through a service's class, with the service's prefix
        for name in cls.model_fields:
            for variable in variables(cls, name):
                assert variable in known, (
                    f"{cls.__name__}.{name} ({variable}) is not in the configuration table: add "
                    "the class to its service's SETTINGS_DOC (config.py) or to "
                    f"driftloop.cli.configuration.PLACED; {STALE_TABLE}"
                )


def test_the_code_names_no_driftloop_variable_outside_the_settings() -> None:
    """A DRIFTLOOP_... name in the code (an os.environ read, a message) is a real setting."""
    known = known_variables()
    sources = [*(REPO / "libs").rglob("*.py"), *(REPO / "services").rglob("*.py")]
    for path in sources:
        if "driftloop/v1" in path.as_posix():
            continue
        for variable in re.findall(r"\bDRIFTLOOP_[A-Z0-9_]*[A-Z0-9]\b", path.read_text()):
            assert variable in known, (
                f"{path.relative_to(REPO)} names {variable}, which no settings class reads "
                "(read it through a settings class with a description)"
            )


def test_compose_references_resolve() -> None:
    document = compose()
    services, volumes = document["services"], set(document.get("volumes") or {})
    for name, service in services.items():
        for dependency in service.get("depends_on") or {}:
            assert dependency in services, f"{name} depends on unknown service {dependency}"
        for mount in service.get("volumes") or []:
            source = mount.split(":", 1)[0]
            if source.startswith("./"):  # a folder of the repository
                assert (REPO / source).is_dir(), f"{name} mounts missing folder {source}"
            else:
                assert source in volumes, f"{name} mounts undeclared volume {source}"
        environment = service.get("environment") or {}
        targets = {
            "DRIFTLOOP_INFERENCE_REGISTRY_TARGET": "DRIFTLOOP_RETRAINER_PORT",
            "DRIFTLOOP_GATEWAY_REGISTRY_TARGET": "DRIFTLOOP_RETRAINER_PORT",
            "DRIFTLOOP_GATEWAY_INFERENCE_TARGETS": "DRIFTLOOP_INFERENCE_PORT",
            "DRIFTLOOP_GATEWAY_DRIFT_TARGET": "DRIFTLOOP_DRIFT_PORT",
            "DRIFTLOOP_DRIFT_REGISTRY_TARGET": "DRIFTLOOP_RETRAINER_PORT",
        }
        for variable, port_variable in targets.items():
            for target in filter(None, environment.get(variable, "").split(",")):
                host, _, port = target.partition(":")
                assert host in services, f"{name}: {variable} names unknown service {host}"
                assert services[host]["environment"][port_variable] == port, f"{name}: {variable}"


def test_every_service_has_a_grpc_health_check_and_a_restart_policy() -> None:
    services = compose()["services"]
    for name in ("retrainer", "inference", "gateway", "drift", "shadow"):
        service = services[name]
        port = service["environment"][f"DRIFTLOOP_{name.upper()}_PORT"]
        test = service["healthcheck"]["test"]
        assert test == ["CMD", "python", "-m", "driftloop.kit.healthcheck", f"127.0.0.1:{port}"]
        assert importlib.util.find_spec(f"{test[3]}") is not None
        assert service["restart"] == "unless-stopped", name
        for dependency, condition in (service.get("depends_on") or {}).items():
            if dependency in ("retrainer", "inference", "gateway", "drift", "shadow"):
                assert condition == {"condition": "service_healthy"}, f"{name} -> {dependency}"


def test_prometheus_scrapes_every_service_at_its_compose_metrics_port() -> None:
    services = compose()["services"]
    prometheus = services["prometheus"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    config = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    for rules in config["rule_files"]:
        assert (REPO / "deploy" / "prometheus" / rules).is_file(), rules
    scraped: dict[str, str] = {}
    for job in config["scrape_configs"]:
        (static,) = job["static_configs"]
        (target,) = static["targets"]
        host, _, port = target.partition(":")
        assert host == job["job_name"], f"job {job['job_name']} scrapes {host}"
        scraped[host] = port
    ported = {
        name: service["environment"][f"DRIFTLOOP_{name.upper()}_METRICS_PORT"]
        for name, service in services.items()
        if f"DRIFTLOOP_{name.upper()}_METRICS_PORT" in (service.get("environment") or {})
    }
    assert set(ported) == {name.lower() for name in SERVICES}
    assert scraped == ported


def test_grafana_mounts_its_provisioning_and_reads_compose_services() -> None:
    document = compose()
    services, grafana = document["services"], document["services"]["grafana"]
    environment = grafana["environment"]
    assert environment["GF_INSTALL_PLUGINS"].split()[0] == "grafana-clickhouse-datasource"
    assert set(grafana["depends_on"]) == {"clickhouse", "prometheus"}
    mounts = dict(mount.split(":")[:2] for mount in grafana["volumes"])
    grafana_dir = REPO / "deploy" / "grafana"
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    (provider,) = yaml.safe_load(
        (grafana_dir / "provisioning" / "dashboards" / "driftloop.yaml").read_text()
    )["providers"]
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    home = Path(environment["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert str(home.parent) == provider["options"]["path"]
    assert (grafana_dir / "dashboards" / home.name).is_file()
    sources = yaml.safe_load(
        (grafana_dir / "provisioning" / "datasources" / "driftloop.yaml").read_text()
    )["datasources"]
    by_type = {source["type"]: source for source in sources}
    # ClickHouse: the server, port, user, password and database the services use.
    url = urlparse(document["x-driftloop-env"]["DRIFTLOOP_CLICKHOUSE_URL"])
    clickhouse = by_type["grafana-clickhouse-datasource"]
    settings = clickhouse["jsonData"]
    assert settings["host"] == url.hostname and settings["host"] in services
    assert (settings["port"], settings["protocol"]) == (url.port, url.scheme)
    assert (
        settings["defaultDatabase"] == document["x-driftloop-env"]["DRIFTLOOP_CLICKHOUSE_DATABASE"]
    )
    assert settings["username"] == "$CLICKHOUSE_USER"
    assert clickhouse["secureJsonData"]["password"] == "$CLICKHOUSE_PASSWORD"
    server = services["clickhouse"]["environment"]
    assert environment["CLICKHOUSE_USER"] == server["CLICKHOUSE_USER"] == url.username
    assert environment["CLICKHOUSE_PASSWORD"] == server["CLICKHOUSE_PASSWORD"] == url.password
    # Prometheus: the compose service, on the port it listens on.
    prometheus = urlparse(by_type["prometheus"]["url"])
    assert prometheus.hostname in services
    assert f"{prometheus.port}:{prometheus.port}" in services[prometheus.hostname]["ports"]
