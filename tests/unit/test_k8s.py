"""deploy/k8s rendered with kustomize and checked against the code (no cluster runs here):
every command starts a real entry point, every variable is a setting the code reads, every
port, probe, target and selector meets what it names."""

from __future__ import annotations

import importlib.util
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from driftloop.cli.__main__ import build_parser
from driftloop.cli.configuration import known_variables
from driftloop.kit.grpc_server import LIVENESS
from driftloop.kit.settings import KafkaSettings
from tests.unit.test_deploy import REPO

KUSTOMIZE = REPO / ".cache" / "go" / "bin" / "kustomize"
K8S = REPO / "deploy" / "k8s"
SERVICES = ("retrainer", "inference", "gateway", "drift", "shadow")
TOKEN_FILE = "admin-token.env"


def kustomize(folder: Path) -> list[dict[str, Any]]:
    binary = KUSTOMIZE if KUSTOMIZE.exists() else shutil.which("kustomize")
    assert binary, f"kustomize is not installed: `make setup` builds it into {KUSTOMIZE}"
    rendered = subprocess.run(
        [str(binary), "build", str(folder)], capture_output=True, text=True, timeout=60
    )
    assert rendered.returncode == 0, rendered.stderr
    return [document for document in yaml.safe_load_all(rendered.stdout) if document]


@pytest.fixture(scope="module", params=["base", "overlays/production"])
def rendered(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> list[dict[str, Any]]:
    """The kustomization rendered as an operator would: the overlay from a copy of the
    tree that holds the admin-token file the operator writes (never committed)."""
    tree = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(K8S, tree)
    if request.param != "base":
        (tree / request.param / TOKEN_FILE).write_text("DRIFTLOOP_ADMIN_TOKEN=not-a-secret\n")
    return kustomize(tree / request.param)


def of_kind(documents: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in documents if d["kind"] == kind}


def containers(documents: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for kind in ("Deployment", "Job"):
        for name, workload in of_kind(documents, kind).items():
            for container in workload["spec"]["template"]["spec"]["containers"]:
                yield name, container


def environment(documents: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    """A container's variables as the pod sees them: config maps and secrets, then env."""
    values: dict[str, str] = {}
    maps, secrets = of_kind(documents, "ConfigMap"), of_kind(documents, "Secret")
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            values |= maps[source["configMapRef"]["name"]]["data"]
        elif "secretRef" in source:
            secret = secrets.get(source["secretRef"]["name"])
            values |= dict.fromkeys((secret or {}).get("data", {}), "<secret>")
    values |= {item["name"]: item["value"] for item in container.get("env", [])}
    return values


def test_every_service_and_the_setup_job_are_there(rendered: list[dict[str, Any]]) -> None:
    deployments = of_kind(rendered, "Deployment")
    assert set(deployments) == set(SERVICES)
    assert set(of_kind(rendered, "Service")) == set(SERVICES)
    assert "driftloop-setup" in of_kind(rendered, "Job")
    assert set(of_kind(rendered, "HorizontalPodAutoscaler")) == {"gateway", "inference"}
    assert set(of_kind(rendered, "PodDisruptionBudget")) == {"gateway"}


def test_every_command_is_a_real_entry_point(rendered: list[dict[str, Any]]) -> None:
    parser = build_parser()
    for name, container in containers(rendered):
        command = container["command"]
        if command[:2] == ["python", "-m"]:
            assert importlib.util.find_spec(f"{command[2]}.__main__") is not None, name
            continue
        assert command[:2] == ["sh", "-c"], f"{name}: {command}"
        for part in re.split(r"&&|;", command[2]):
            words = shlex.split(part)
            assert words[0] == "driftloop", f"{name}: not a driftloop command: {part}"
            parser.parse_args(words[1:])


def test_every_variable_is_a_setting_the_code_reads(rendered: list[dict[str, Any]]) -> None:
    known = known_variables()
    for name, container in containers(rendered):
        for variable in environment(rendered, container):
            if variable.startswith("DRIFTLOOP_"):
                assert variable in known, f"{name}: {variable} is not read by any setting"


def test_ports_probes_and_metrics_meet_the_settings(rendered: list[dict[str, Any]]) -> None:
    for name, container in containers(rendered):
        if name not in SERVICES:
            continue
        env = environment(rendered, container)
        prefix = f"DRIFTLOOP_{name.upper()}_"
        port, metrics = int(env[prefix + "PORT"]), int(env[prefix + "METRICS_PORT"])
        assert env[prefix + "HOST"] == "0.0.0.0", f"{name} must listen beyond loopback"
        assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
            "grpc": port,
            "metrics": metrics,
        }
        for probe in ("readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"]["port"] == port, f"{name}: {probe}"
        # Readiness asks the server; liveness asks "liveness", SERVING while the service
        # waits for Kafka (NOT_SERVING then would have it restarted, not waited for).
        assert "service" not in container["readinessProbe"]["grpc"], name
        assert container["livenessProbe"]["grpc"]["service"] == LIVENESS, name
        pod = of_kind(rendered, "Deployment")[name]["spec"]["template"]
        assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(metrics)
        service = of_kind(rendered, "Service")[name]["spec"]
        assert {p["port"] for p in service["ports"]} == {port, metrics}


def test_targets_name_services_on_their_ports(rendered: list[dict[str, Any]]) -> None:
    services = of_kind(rendered, "Service")
    for name, container in containers(rendered):
        for variable, value in environment(rendered, container).items():
            if not variable.endswith(("_TARGET", "_TARGETS")):
                continue
            for target in value.split(","):
                host, _, port = target.removeprefix("dns:///").partition(":")
                assert host in services, f"{name}: {variable} names no Service: {host}"
                ports = {p["port"] for p in services[host]["spec"]["ports"]}
                assert int(port) in ports, f"{name}: {variable} port {port} not on {host}"
                backend = of_kind(rendered, "Deployment")[host]
                backend_env = environment(
                    rendered, backend["spec"]["template"]["spec"]["containers"][0]
                )
                assert backend_env[f"DRIFTLOOP_{host.upper()}_PORT"] == port, variable


def test_selectors_select_their_pods(rendered: list[dict[str, Any]]) -> None:
    deployments = of_kind(rendered, "Deployment")
    labels = {n: d["spec"]["template"]["metadata"]["labels"] for n, d in deployments.items()}
    for name, deployment in deployments.items():
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels[name].items()
    for name, service in of_kind(rendered, "Service").items():
        assert service["spec"]["selector"].items() <= labels[name].items()
    for name, budget in of_kind(rendered, "PodDisruptionBudget").items():
        assert budget["spec"]["selector"]["matchLabels"].items() <= labels[name].items()
    for name, autoscaler in of_kind(rendered, "HorizontalPodAutoscaler").items():
        target = autoscaler["spec"]["scaleTargetRef"]
        assert target["kind"] == "Deployment" and target["name"] in deployments, name
        resources = deployments[target["name"]]["spec"]["template"]["spec"]["containers"][0]
        assert "cpu" in resources["resources"]["requests"], f"{name}: HPA on CPU needs a request"


def test_consumers_scale_by_partitions_and_the_retrainer_is_one(
    rendered: list[dict[str, Any]],
) -> None:
    deployments = of_kind(rendered, "Deployment")
    env = environment(rendered, deployments["drift"]["spec"]["template"]["spec"]["containers"][0])
    partitions = int(env.get("DRIFTLOOP_KAFKA_PARTITIONS", KafkaSettings().partitions))
    for name in ("drift", "shadow"):
        assert 1 <= deployments[name]["spec"]["replicas"] <= partitions, name
    retrainer = deployments["retrainer"]["spec"]
    assert retrainer["replicas"] == 1 and retrainer["strategy"]["type"] == "Recreate"


def test_the_overlay_generates_the_admin_secret_the_pods_use(
    tmp_path: Path,
) -> None:
    tree = tmp_path / "k8s"
    shutil.copytree(K8S, tree)
    overlay = tree / "overlays" / "production"
    (overlay / TOKEN_FILE).write_text("DRIFTLOOP_ADMIN_TOKEN=not-a-secret\n")
    documents = kustomize(overlay)
    secrets = of_kind(documents, "Secret")
    assert len(secrets) == 1
    (secret_name,) = secrets
    assert secret_name.startswith("driftloop-admin-")  # content-hashed: a new token rolls pods
    for name, container in containers(documents):
        if name in SERVICES:
            refs = [s["secretRef"]["name"] for s in container["envFrom"] if "secretRef" in s]
            assert refs == [secret_name], name
    assert all(
        d["metadata"].get("namespace") == "driftloop" for d in documents if d["kind"] != "Namespace"
    )
    # Without the file, the overlay does not render: no default token ships.
    (overlay / TOKEN_FILE).unlink()
    binary = KUSTOMIZE if KUSTOMIZE.exists() else shutil.which("kustomize")
    assert binary is not None
    refused = subprocess.run(
        [str(binary), "build", str(overlay)], capture_output=True, text=True, timeout=60
    )
    assert refused.returncode != 0 and TOKEN_FILE in refused.stderr
    assert (K8S / "overlays" / "production" / ".gitignore").read_text().strip() == TOKEN_FILE
