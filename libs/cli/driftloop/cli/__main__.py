"""`driftloop`: run the local broker, set up topics and schema, run the demo.

Each sub-command reads the same environment variables as the services (`driftloop settings`
lists them, and the README's configuration table) and prints its progress.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from driftloop.cli import (
    commands,
    configuration,
    drift,
    experiments,
    models,
    report,
    retrain,
    routing,
    up,
)
from driftloop.kit.logging import configure_logging
from driftloop.kit.settings import ConfigError, LoggingSettings, load_settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="driftloop", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    kafka = sub.add_parser("kafka", help="run a local single-node Apache Kafka broker (KRaft)")
    kafka.add_argument("--data-dir", type=Path, default=Path(".data/kafka"))
    kafka.add_argument("--port", type=int, default=9092)
    kafka.add_argument("--controller-port", type=int, default=9093)
    kafka.set_defaults(run=commands.run_kafka)

    topics = sub.add_parser("topics", help="create the driftloop topics (idempotent)")
    topics.set_defaults(run=commands.create_topics)

    schema = sub.add_parser("schema", help="print or apply the ClickHouse schema")
    schema.add_argument("action", choices=["print", "apply"])
    schema.set_defaults(run=commands.schema)

    models.add_commands(sub)
    routing.add_commands(sub)
    drift.add_commands(sub)
    retrain.add_commands(sub)
    experiments.add_commands(sub)
    up.add_commands(sub)
    report.add_commands(sub)
    configuration.add_commands(sub)

    demo = sub.add_parser(
        "demo",
        help="the closed loop end to end: drift, retrain, gate, canary, promotion (see README)",
        description="Start a local broker (unless one is configured), embedded ClickHouse and "
        "the five services; serve seeded traffic whose churn relation changes, and watch the "
        "loop detect, retrain, gate, canary and promote with no person in it. "
        "Example: driftloop demo --change-after 4000",
    )
    demo.add_argument(
        "--change-after",
        type=int,
        default=4000,
        help="requests served before the world changes (default 4000)",
    )
    demo.add_argument("--seed", type=int, default=7, help="seed of the traffic (default 7)")
    demo.add_argument("--data-dir", type=Path, default=Path(".data/demo"))
    demo.set_defaults(run=commands.demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        # A terminal tool: readable lines, warnings and up unless DRIFTLOOP_LOG_LEVEL says more.
        logging_settings = load_settings(LoggingSettings)
        level = logging_settings.level if "DRIFTLOOP_LOG_LEVEL" in os.environ else "WARNING"
        configure_logging(level, "text")
        code: int = asyncio.run(args.run(args))
    except ConfigError as error:
        print(f"driftloop: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
