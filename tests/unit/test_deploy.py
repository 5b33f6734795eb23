"""docker-compose.yml and deploy/ checked against the code (no Docker engine runs here)."""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from driftloop.cli.__main__ import build_parser
from driftloop.client import ClientSettings
from driftloop.drift.config import DriftSettings
from driftloop.gateway.config import GatewaySettings
from driftloop.inference.config import InferenceSettings
from driftloop.kit.settings import (
    ArtifactSettings,
    ClickHouseSettings,
    GrpcServerSettings,
    KafkaSettings,
    LoggingSettings,
)
from driftloop.retrainer.config import RetrainerSettings
from driftloop.shadow.config import ShadowSettings

REPO = Path(__file__).resolve().parents[2]
SERVICES = ("GATEWAY", "INFERENCE", "SHADOW", "DRIFT", "RETRAINER")


def variables(cls: type[BaseSettings], prefix: str | None = None) -> set[str]:
    prefix = prefix if prefix is not None else str(cls.model_config.get("env_prefix", ""))
    names: set[str] = set()
    for name, field in cls.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(str(choice) for choice in alias.choices)
        else:
            names.add((prefix + name).upper())
    return names


def known_variables() -> set[str]:
    known = set[str]()
    for cls in (
        KafkaSettings,
        ClickHouseSettings,
        LoggingSettings,
        ArtifactSettings,
        ClientSettings,
        InferenceSettings,
        RetrainerSettings,
        GatewaySettings,
        DriftSettings,
        ShadowSettings,
    ):
        known |= variables(cls)
    for service in SERVICES:
        known |= variables(GrpcServerSettings, f"DRIFTLOOP_{service}_")
    return known


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


def test_the_readme_documents_every_setting() -> None:
    readme = (REPO / "README.md").read_text()
    documented = set(re.findall(r"`(DRIFTLOOP_[A-Z0-9_<>]+|KAFKA_BOOTSTRAP_SERVERS)`", readme))
    documented |= {"DRIFTLOOP_<SERVICE>_TLS_KEY_FILE"}
    generic = {("DRIFTLOOP_<SERVICE>_" + name).upper() for name in GrpcServerSettings.model_fields}
    service = re.compile(r"^DRIFTLOOP_(" + "|".join(SERVICES) + ")_")
    for variable in known_variables():
        as_generic = service.sub("DRIFTLOOP_<SERVICE>_", variable)
        name = as_generic if as_generic in generic else variable
        assert name in documented, f"{name} is not in the README's configuration table"


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
