"""The commands that set driftloop up and run it: `up`, `status`, `settings`, the local
broker, topics, schema, and the demo.

Their options are defined here; each imports what it runs (the broker, aiokafka,
ClickHouse, the services: `up.py`, `configuration.py`, `demo.py`) only when it runs, so
their help prints at once.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from driftloop.cli.calls import print_json

__all__ = ["HOST", "SERVICES", "add_commands", "create_topics", "demo", "run_kafka", "schema"]

# Where the standalone services listen (`driftloop up`, the demo, the tests' stack).
HOST = "127.0.0.1"
SERVICES = ("gateway", "inference", "drift", "shadow", "retrainer")


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    up = sub.add_parser(
        "up",
        help="run everything on this machine until Ctrl-C (standalone mode)",
        description="Start the configured Kafka broker (else a local one), ClickHouse "
        "(embedded unless DRIFTLOOP_CLICKHOUSE_URL is set) and the five services in this "
        "process on their configured ports; print where they are. Data persists in the "
        "data folder between runs.\n\nexample:\n  driftloop up --data-dir .data",
    )
    up.add_argument("--data-dir", type=Path, default=Path(".data"), help="where data lives")
    up.add_argument("--host", default=HOST, help="the address the services bind")
    up.add_argument("--kafka-port", type=int, default=9092, help="the local broker's port")
    up.add_argument(
        "--controller-port", type=int, default=9093, help="the local broker's controller port"
    )
    up.set_defaults(run=run_up)

    status = sub.add_parser(
        "status",
        help="health of every service, the broker and ClickHouse",
        description="Ask each service (DRIFTLOOP_<SERVICE>_TARGET) for its gRPC health, and "
        "the broker and ClickHouse whether they answer. Exit status 2 when a service is "
        "not serving.\n\nexample:\n  driftloop status --json",
    )
    status.add_argument("--json", action="store_true", help="the status as JSON")
    status.add_argument(
        "--service",
        choices=SERVICES,
        help="only this service's health (a container health check): exit 2 unless serving",
    )
    status.set_defaults(run=run_status)

    settings = sub.add_parser(
        "settings",
        help="every setting: its value here and where it comes from, the default, the meaning",
        description="List every environment variable driftloop reads (from the settings "
        "classes): its value here, from the environment or the default, and what it means; "
        "then check them as the services would (exit status 2 naming every bad variable). "
        "--markdown prints the README's configuration table.\n\nexamples:\n"
        "  driftloop settings\n  driftloop settings --json\n"
        "  driftloop settings --readme README.md",
    )
    output = settings.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="the listing as JSON")
    output.add_argument(
        "--markdown", action="store_true", help="the README's configuration table (Markdown)"
    )
    output.add_argument(
        "--readme",
        type=Path,
        metavar="FILE",
        help="rewrite the table between the settings markers in FILE",
    )
    settings.set_defaults(run=run_settings)

    kafka = sub.add_parser(
        "kafka",
        help="run a local single-node Apache Kafka broker (KRaft)",
        description="Run a local single-node Apache Kafka broker (KRaft) in the foreground "
        "until Ctrl-C, from the jars of `make kafka-jars` (DRIFTLOOP_KAFKA_LIBS); other "
        "shells reach it with the DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS it prints.",
    )
    kafka.add_argument(
        "--data-dir", type=Path, default=Path(".data/kafka"), help="where the broker keeps data"
    )
    kafka.add_argument("--port", type=int, default=9092, help="the client port")
    kafka.add_argument("--controller-port", type=int, default=9093, help="the KRaft port")
    kafka.set_defaults(run=run_kafka)

    topics = sub.add_parser(
        "topics",
        help="create the driftloop topics (idempotent)",
        description="Create the driftloop topics on DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS "
        "(with DRIFTLOOP_KAFKA_TOPIC_PREFIX, _PARTITIONS, _REPLICATION_FACTOR); topics that "
        "exist are left as they are.",
    )
    topics.set_defaults(run=create_topics)

    schema_command = sub.add_parser(
        "schema",
        help="print or apply the ClickHouse schema",
        description="Print the ClickHouse schema (the statements the services run at "
        "start-up), or apply it to DRIFTLOOP_CLICKHOUSE_URL (else embedded ClickHouse in "
        "DRIFTLOOP_CLICKHOUSE_PATH).",
    )
    schema_command.add_argument(
        "action", choices=["print", "apply"], help="print the statements, or run them"
    )
    schema_command.set_defaults(run=schema)

    demo_command = sub.add_parser(
        "demo",
        help="the closed loop end to end: drift, retrain, gate, canary, promotion (see README)",
        description="Start a local broker (unless one is configured), embedded ClickHouse and "
        "the five services; serve seeded traffic whose churn relation changes, and watch the "
        "loop detect, retrain, gate, canary and promote with no person in it.",
    )
    demo_command.add_argument(
        "--change-after", type=int, default=4000, help="requests served before the world changes"
    )
    demo_command.add_argument("--seed", type=int, default=7, help="seed of the traffic")
    demo_command.add_argument(
        "--data-dir", type=Path, default=Path(".data/demo"), help="where the demo keeps data"
    )
    demo_command.set_defaults(run=demo)


async def run_kafka(args: argparse.Namespace) -> int:
    """Run a local broker in the foreground until Ctrl-C or SIGTERM."""
    from driftloop.kafka.local_broker import LocalBroker, find_kafka_libs
    from driftloop.kit.grpc_server import wait_for_signal

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
    from driftloop.kafka.topics import ensure_topics
    from driftloop.kit.settings import ConfigError, KafkaSettings, load_settings

    settings = load_settings(KafkaSettings)
    if settings.bootstrap_servers is None:
        raise ConfigError("DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS is not set (which broker?)")
    created = await ensure_topics(settings, settings.bootstrap_servers)
    if args.json:
        print_json({"bootstrap_servers": settings.bootstrap_servers, "created": created})
    else:
        print(f"created {len(created)} topics: {', '.join(created) or '(all existed)'}")
    return 0


async def schema(args: argparse.Namespace) -> int:
    from driftloop.clickhouse.schema import schema_statements
    from driftloop.kit.settings import ClickHouseSettings, load_settings

    settings = load_settings(ClickHouseSettings)
    if args.action == "print":
        statements = schema_statements(settings.database, settings.cluster)
        if args.json:
            print_json({"database": settings.database, "statements": list(statements)})
            return 0
        for statement in statements:
            print(statement + ";\n")
        return 0
    from driftloop.clickhouse.client import open_clickhouse

    clickhouse = await open_clickhouse(settings)
    await clickhouse.close()
    where = "the ClickHouse server" if settings.url else f"embedded ClickHouse in {settings.path}"
    if args.json:
        print_json({"database": settings.database, "applied": True, "where": where})
    else:
        print(f"schema applied to database {settings.database} in {where}")
    return 0


async def demo(args: argparse.Namespace) -> int:
    from driftloop.cli.demo import demo as run_demo

    return await run_demo(args)


async def run_up(args: argparse.Namespace) -> int:
    from driftloop.cli.up import up as run

    return await run(args)


async def run_status(args: argparse.Namespace) -> int:
    from driftloop.cli.up import status as run

    return await run(args)


async def run_settings(args: argparse.Namespace) -> int:
    from driftloop.cli.configuration import run

    return await run(args)
