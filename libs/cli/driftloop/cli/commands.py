"""The small sub-commands: local broker, topics, schema."""

from __future__ import annotations

import argparse
import asyncio
import time

from driftloop.cli.demo import demo
from driftloop.clickhouse.client import open_clickhouse
from driftloop.clickhouse.schema import schema_statements
from driftloop.kafka.local_broker import LocalBroker, find_kafka_libs
from driftloop.kafka.topics import ensure_topics
from driftloop.kit.grpc_server import wait_for_signal
from driftloop.kit.settings import ClickHouseSettings, ConfigError, KafkaSettings, load_settings

__all__ = ["create_topics", "demo", "run_kafka", "schema"]


async def run_kafka(args: argparse.Namespace) -> int:
    """Run a local broker in the foreground until Ctrl-C or SIGTERM."""
    broker = LocalBroker(
        find_kafka_libs(), args.data_dir, port=args.port, controller_port=args.controller_port
    )
    started = time.monotonic()
    print(f"starting a local Kafka broker, data in {args.data_dir} ...", flush=True)
    await asyncio.to_thread(broker.start)
    print(
        f"Kafka ready at {broker.bootstrap_servers} in {time.monotonic() - started:.1f} s; "
        f"export DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap_servers} "
        "in other shells. Ctrl-C stops it.",
        flush=True,
    )
    try:
        await wait_for_signal()
    finally:
        print("stopping the broker ...", flush=True)
        await asyncio.to_thread(broker.stop)
    return 0


async def create_topics(args: argparse.Namespace) -> int:
    settings = load_settings(KafkaSettings)
    if settings.bootstrap_servers is None:
        raise ConfigError("DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS is not set (which broker?)")
    created = await ensure_topics(settings, settings.bootstrap_servers)
    print(f"created {len(created)} topics: {', '.join(created) or '(all existed)'}")
    return 0


async def schema(args: argparse.Namespace) -> int:
    settings = load_settings(ClickHouseSettings)
    if args.action == "print":
        for statement in schema_statements(settings.database, settings.cluster):
            print(statement + ";\n")
        return 0
    clickhouse = await open_clickhouse(settings)
    await clickhouse.close()
    where = "the ClickHouse server" if settings.url else f"embedded ClickHouse in {settings.path}"
    print(f"schema applied to database {settings.database} in {where}")
    return 0
