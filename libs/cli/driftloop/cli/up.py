"""`driftloop up` and `driftloop status`: standalone mode for users.

`up` runs the whole system on one machine until Ctrl-C or SIGTERM: the configured Kafka
broker, else a local single-node broker (KRaft) with its data under the data folder;
the configured ClickHouse server, else the embedded engine in a folder that persists
between runs; the five services in this process (driftloop.cli.stack), each on its
configured port (DRIFTLOOP_<SERVICE>_PORT, defaults 50051 to 50055). It prints where
everything is and the environment a shell needs to talk to it. A second `up` on the same
folder finds its models, policies and prediction log again.

`status` asks every service for its health, and the broker and ClickHouse whether they
answer, from the same environment a client uses.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import os
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from driftloop.cli.calls import EXIT_FAILED
from driftloop.cli.commands import SERVICES as SERVICES
from driftloop.cli.stack import HOST, Ports, running_services
from driftloop.clickhouse.client import open_clickhouse
from driftloop.client import ClientSettings
from driftloop.drift.config import DriftSettings
from driftloop.gateway.config import GatewaySettings
from driftloop.inference.config import InferenceSettings
from driftloop.kafka.clients import make_admin
from driftloop.kafka.local_broker import LocalBroker, check_plaintext, find_kafka_libs
from driftloop.kafka.topics import GroupNames, ensure_topics, group_lag
from driftloop.kit.grpc_server import wait_for_signal
from driftloop.kit.healthcheck import SERVING, health
from driftloop.kit.settings import (
    ArtifactSettings,
    ClickHouseSettings,
    KafkaSettings,
    load_settings,
)
from driftloop.models.artifacts import LocalArtifactStore
from driftloop.retrainer.config import RetrainerSettings
from driftloop.shadow.config import ShadowSettings


def configured_ports() -> Ports:
    """Each service's port from its settings (DRIFTLOOP_<SERVICE>_PORT or the default)."""
    return Ports(
        gateway=load_settings(GatewaySettings).port,
        inference=load_settings(InferenceSettings).port,
        drift=load_settings(DriftSettings).port,
        shadow=load_settings(ShadowSettings).port,
        retrainer=load_settings(RetrainerSettings).port,
    )


def admin_token(data_dir: Path) -> tuple[SecretStr, str]:
    """DRIFTLOOP_ADMIN_TOKEN, else the token this data folder was first started with
    (kept in a file only its owner reads), else a new one; and where it came from."""
    if os.environ.get("DRIFTLOOP_ADMIN_TOKEN"):
        return SecretStr(os.environ["DRIFTLOOP_ADMIN_TOKEN"]), "DRIFTLOOP_ADMIN_TOKEN"
    path = data_dir / "admin-token"
    if path.is_file():
        return SecretStr(path.read_text().strip()), str(path)
    data_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(24)
    path.touch(mode=0o600)
    path.write_text(token)
    return SecretStr(token), f"{path} (new)"


@contextlib.asynccontextmanager
async def broker(
    settings: KafkaSettings, data_dir: Path, port: int, controller_port: int
) -> AsyncIterator[str]:
    if settings.bootstrap_servers:
        yield settings.bootstrap_servers
        return
    local = LocalBroker(find_kafka_libs(), data_dir, port=port, controller_port=controller_port)
    print(f"starting a local Apache Kafka broker on {HOST}:{port}, data in {data_dir} ...")
    await asyncio.to_thread(local.start)
    try:
        yield local.bootstrap_servers
    finally:
        print("stopping the local broker ...", flush=True)
        await asyncio.to_thread(local.stop)


async def up(args: argparse.Namespace) -> int:
    started = time.monotonic()
    data_dir: Path = args.data_dir
    kafka = load_settings(KafkaSettings)
    check_plaintext(kafka)  # before anything is made: a local broker would not do
    clickhouse_env = any(
        name in os.environ for name in ("DRIFTLOOP_CLICKHOUSE_URL", "DRIFTLOOP_CLICKHOUSE_PATH")
    )
    clickhouse_settings = (
        load_settings(ClickHouseSettings)
        if clickhouse_env
        else load_settings(ClickHouseSettings, path=data_dir / "clickhouse")
    )
    artifacts_path = (
        load_settings(ArtifactSettings).path
        if "DRIFTLOOP_ARTIFACTS_PATH" in os.environ
        else data_dir / "artifacts"
    )
    ports = configured_ports()
    token, token_source = admin_token(data_dir)
    async with broker(kafka, data_dir / "kafka", args.kafka_port, args.controller_port) as servers:
        await ensure_topics(kafka, servers)
        clickhouse = await open_clickhouse(clickhouse_settings)
        try:
            async with running_services(
                kafka,
                servers,
                clickhouse,
                LocalArtifactStore(artifacts_path),
                token,
                ports=ports,
                overrides={name: {"host": args.host} for name in SERVICES},
            ):
                where = (
                    "a ClickHouse server"
                    if clickhouse_settings.url
                    else f"embedded in {clickhouse_settings.path}"
                )
                print(
                    f"driftloop is up in {time.monotonic() - started:.1f} s: Kafka {servers} "
                    f"(prefix {kafka.topic_prefix!r}), ClickHouse {where}, artifacts in "
                    f"{artifacts_path}",
                    flush=True,
                )
                for name in SERVICES:
                    print(f"  {name:<10} {args.host}:{getattr(ports, name)}")
                print("In another shell, to use the CLI, the Python client or a label producer:")
                for line in exports(ports, servers, kafka.topic_prefix):
                    print(f"  {line}")
                print(f"  (the admin token is in {token_source})")
                print("Ctrl-C stops everything.", flush=True)
                received = await wait_for_signal()
                print(f"received {received.name}: stopping ...", flush=True)
        finally:
            await clickhouse.close()
    print("stopped.", flush=True)
    return 0


def exports(ports: Ports, servers: str, prefix: str) -> list[str]:
    lines = [f"export DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS={servers}"]
    if prefix != "driftloop.":
        lines.append(f"export DRIFTLOOP_KAFKA_TOPIC_PREFIX={prefix}")
    targets = {
        "REGISTRY": ports.retrainer,
        "INFERENCE": ports.inference,
        "GATEWAY": ports.gateway,
        "DRIFT": ports.drift,
        "SHADOW": ports.shadow,
    }
    lines += [f"export DRIFTLOOP_{name}_TARGET={HOST}:{port}" for name, port in targets.items()]
    return lines


async def _kafka(settings: KafkaSettings) -> str:
    if not settings.bootstrap_servers:
        return "not configured (DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS)"
    admin = make_admin(settings, settings.bootstrap_servers, request_timeout_ms=3000)
    try:
        await asyncio.wait_for(admin.start(), 5)
        topics = await asyncio.wait_for(admin.list_topics(), 5)
    except Exception as error:  # noqa: BLE001  # any failure means the same: not reachable
        return f"unreachable at {settings.bootstrap_servers} ({type(error).__name__})"
    finally:
        await admin.close()
    ours = [t for t in topics if t.startswith(settings.topic_prefix)]
    return f"up at {settings.bootstrap_servers} ({len(ours)} driftloop topics)"


def _clickhouse(settings: ClickHouseSettings) -> str:
    if settings.url:
        return "a ClickHouse server (DRIFTLOOP_CLICKHOUSE_URL; ask it with `driftloop schema`)"
    lock = settings.path / ".driftloop.lock"
    if not lock.exists():
        return f"embedded in {settings.path}: not created yet"
    with lock.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return f"embedded in {settings.path}: open in a running process"
        fcntl.flock(handle, fcntl.LOCK_UN)
    return f"embedded in {settings.path}: not open (no driftloop process uses it)"


async def _lag(settings: KafkaSettings) -> dict[str, dict[str, int | None]]:
    """Each work-sharing consumer group's backlog per topic ({} when Kafka is not there)."""
    if not settings.bootstrap_servers:
        return {}
    groups = GroupNames(settings.topic_prefix).backlogs()
    try:
        lags = await asyncio.wait_for(
            asyncio.gather(
                *(
                    group_lag(settings, settings.bootstrap_servers, group, topics)
                    for group, topics in groups.items()
                )
            ),
            10,
        )
    except Exception:  # noqa: BLE001  # the broker line already says why
        return {}
    return dict(zip(groups, lags, strict=True))


def _lag_line(lag: dict[str, int | None]) -> str:
    return ", ".join(
        f"{topic}: {'nothing committed yet' if records is None else f'{records:,} behind'}"
        for topic, records in lag.items()
    )


async def status(args: argparse.Namespace) -> int:
    client = load_settings(ClientSettings)
    targets = {
        "gateway": client.gateway_target,
        "inference": client.inference_target,
        "drift": client.drift_target,
        "shadow": client.shadow_target,
        "retrainer": client.registry_target,
    }
    if args.service:
        # A container's health check: this one service, nothing else asked.
        state = await health(targets[args.service])
        if args.json:
            entry = {"target": targets[args.service], "health": state}
            print(json.dumps({"services": {args.service: entry}}, indent=2))
        else:
            print(f"{args.service} {targets[args.service]} {state}")
        return 0 if state == SERVING else EXIT_FAILED
    states = await asyncio.gather(*(health(target) for target in targets.values()))
    kafka = load_settings(KafkaSettings)
    report: dict[str, Any] = {
        "services": {
            name: {"target": target, "health": state}
            for (name, target), state in zip(targets.items(), states, strict=True)
        },
        "kafka": await _kafka(kafka),
        "lag": await _lag(kafka),
        "clickhouse": _clickhouse(load_settings(ClickHouseSettings)),
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for name, entry in report["services"].items():
            print(f"{name:<10} {entry['target']:<22} {entry['health']}")
        print(f"{'kafka':<10} {report['kafka']}")
        for group, lag in report["lag"].items():
            print(f"{'lag':<10} {group}: {_lag_line(lag)}")
        print(f"{'clickhouse':<10} {report['clickhouse']}")
    down = [name for name, state in zip(targets, states, strict=True) if state != SERVING]
    return EXIT_FAILED if down else 0
