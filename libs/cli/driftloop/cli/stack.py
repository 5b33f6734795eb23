"""The five services in one process: standalone mode's composition, shared by the demo and
the end-to-end tests (and `driftloop up`).

Each service gets its own gRPC port (chosen free up front, so every service knows every
other's address before any starts) and they talk to each other only over gRPC and Kafka,
exactly as they do when distributed. One embedded ClickHouse is shared between them (the
engine allows one data folder per process). Services start in dependency order and stop
in reverse; a service that fails to start is stopped, and so are the ones already running.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from driftloop.cli.commands import HOST as HOST
from driftloop.clickhouse.client import ClickHouse
from driftloop.client import ClientSettings
from driftloop.drift.config import DriftSettings
from driftloop.drift.server import DriftService
from driftloop.gateway.config import GatewaySettings
from driftloop.gateway.server import GatewayService
from driftloop.inference.config import InferenceSettings
from driftloop.inference.server import InferenceService
from driftloop.kafka.local_broker import free_port
from driftloop.kit.settings import KafkaSettings
from driftloop.models.artifacts import LocalArtifactStore
from driftloop.retrainer.config import RetrainerSettings
from driftloop.retrainer.server import RetrainerService
from driftloop.shadow.config import ShadowSettings
from driftloop.shadow.server import ShadowService


def settings(
    base: dict[str, Any], name: str, extra: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """A service's settings: the common ones, then its overrides."""
    return {**base, **extra.get(name, {})}


@dataclass(frozen=True)
class Ports:
    gateway: int
    inference: int
    drift: int
    shadow: int
    retrainer: int

    @classmethod
    def free(cls) -> Ports:
        return cls(*(free_port(HOST) for _ in range(5)))

    def target(self, service: str) -> str:
        return f"{HOST}:{getattr(self, service)}"


@dataclass
class Services:
    retrainer: RetrainerService
    inference: InferenceService
    drift: DriftService
    shadow: ShadowService
    gateway: GatewayService
    ports: Ports
    admin_token: SecretStr

    def client_settings(self, actor: str = "") -> ClientSettings:
        """Where a client finds this stack (the same as DRIFTLOOP_*_TARGET in the shell)."""
        return ClientSettings(
            registry_target=self.ports.target("retrainer"),
            inference_target=self.ports.target("inference"),
            gateway_target=self.ports.target("gateway"),
            drift_target=self.ports.target("drift"),
            shadow_target=self.ports.target("shadow"),
            admin_token=self.admin_token,
            actor=actor,
        )


@contextlib.asynccontextmanager
async def running_services(
    kafka: KafkaSettings,
    bootstrap_servers: str,
    clickhouse: ClickHouse,
    artifacts: LocalArtifactStore,
    admin_token: SecretStr,
    *,
    ports: Ports | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> AsyncIterator[Services]:
    """The registry + retrainer, inference, drift, shadow and gateway services, started and
    wired; stopped on the way out. `overrides` sets service settings, by service name (over
    the environment's and the defaults)."""
    ports = ports or Ports.free()
    extra = overrides or {}
    common: dict[str, Any] = {"host": HOST, "admin_token": admin_token}

    retrainer = RetrainerService(
        RetrainerSettings(
            **settings(common, "retrainer", extra),
            port=ports.retrainer,
            gateway_target=ports.target("gateway"),
        ),
        kafka,
        bootstrap_servers,
        clickhouse,
        artifacts,
    )
    inference = InferenceService(
        InferenceSettings(
            **settings(common, "inference", extra),
            port=ports.inference,
            registry_target=ports.target("retrainer"),
        ),
        artifacts,
        kafka,
        bootstrap_servers,
    )
    drift = DriftService(
        DriftSettings(
            **settings(common, "drift", extra),
            port=ports.drift,
            registry_target=ports.target("retrainer"),
        ),
        kafka,
        bootstrap_servers,
        clickhouse,
    )
    shadow = ShadowService(
        ShadowSettings(
            **settings(common, "shadow", extra),
            port=ports.shadow,
            inference_targets=[ports.target("inference")],
        ),
        kafka,
        bootstrap_servers,
        clickhouse,
    )
    gateway = GatewayService(
        GatewaySettings(
            **settings(common, "gateway", extra),
            port=ports.gateway,
            inference_targets=[ports.target("inference")],
            registry_target=ports.target("retrainer"),
            drift_target=ports.target("drift"),
            shadow_target=ports.target("shadow"),
        ),
        kafka,
        bootstrap_servers,
    )
    async with contextlib.AsyncExitStack() as stack:
        for service in (retrainer, inference, drift, shadow, gateway):
            # Stopped even when its start fails half-way (its port taken after its Kafka
            # clients started): a service's stop closes what it started, and only that.
            stack.push_async_callback(service.stop, 0)
            await service.start()
        yield Services(retrainer, inference, drift, shadow, gateway, ports, admin_token)
