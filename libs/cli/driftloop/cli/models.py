"""`driftloop models ...` and `driftloop predict`: the registry and inference from a shell."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from driftloop.cli.calls import print_json, with_client
from driftloop.client import DriftloopClient
from driftloop.models.convert import OUTPUT_KINDS, schema_to_proto
from driftloop.models.schema import Feature, Schema
from driftloop.v1 import registry_pb2


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    models = sub.add_parser("models", help="register, list, show and alias model versions")
    actions = models.add_subparsers(dest="action", required=True)

    register = actions.add_parser(
        "register", help="train on a CSV/Parquet file, or register an artifact"
    )
    register.add_argument("--model", required=True)
    source = register.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--data", type=Path, help="training data (.csv or .parquet): trains the linear flavor"
    )
    source.add_argument(
        "--artifact", type=Path, help="a model file (river pickle, or a python-flavor file)"
    )
    register.add_argument("--target", help="the label column (with --data)")
    register.add_argument(
        "--task", default="auto", choices=["auto", "binary", "multiclass", "regression"]
    )
    register.add_argument("--seed", type=int, default=0)
    register.add_argument("--l2", type=float, default=1.0)
    register.add_argument("--flavor", choices=["river", "python"], help="with --artifact")
    register.add_argument(
        "--schema", type=Path, help='with --artifact: JSON {"age": "number", "plan": "category"}'
    )
    register.add_argument("--output-kind", choices=["binary", "multiclass", "regression"])
    register.add_argument("--entry-point", default="", help="python flavor: module:Class")
    register.add_argument("--parent", default="", help="the version this one was retrained from")
    register.add_argument("--tag", action="append", default=[], help="key=value (repeatable)")
    register.add_argument("--alias", help="also point this alias at the new version")
    register.set_defaults(run=run_register)

    listing = actions.add_parser("list", help="the versions of a model")
    listing.add_argument("--model", required=True)
    listing.set_defaults(run=run_list)

    show = actions.add_parser("show", help="one version with its lineage (as JSON)")
    show.add_argument("--model", required=True)
    show.add_argument("--version", required=True, help="a number or an alias")
    show.add_argument("--with-baseline", action="store_true", help="include the drift baseline")
    show.set_defaults(run=run_show)

    alias = actions.add_parser("alias", help="point an alias at a version (compare-and-set)")
    alias.add_argument("--model", required=True)
    alias.add_argument("--alias", required=True)
    alias.add_argument("--version", required=True)
    alias.add_argument(
        "--expected", help="the version it points to now ('' for none); default: read it"
    )
    alias.add_argument("--reason", default="")
    alias.set_defaults(run=run_alias)

    history = actions.add_parser("history", help="every alias move of a model")
    history.add_argument("--model", required=True)
    history.add_argument("--alias", default="")
    history.add_argument("--at", help="ISO time: which version each alias pointed to then")
    history.set_defaults(run=run_history)

    predict = sub.add_parser("predict", help="predict one row (JSON) or a JSON-lines file of rows")
    predict.add_argument("--model", required=True)
    predict.add_argument("--version", default="champion", help="a number or an alias")
    rows = predict.add_mutually_exclusive_group(required=True)
    rows.add_argument("--row", help='JSON object: {"age": 41, "plan": "pro"}')
    rows.add_argument("--rows", type=Path, help="a file with one JSON object per line")
    predict.add_argument(
        "--gateway",
        action="store_true",
        help="through the gateway (routed and logged), not inference",
    )
    predict.add_argument("--entity-key", default="", help="with --gateway: the sticky routing key")
    predict.set_defaults(run=run_predict)


def _time(stamp: Any) -> str:
    return str(stamp.ToDatetime(tzinfo=dt.UTC).isoformat(timespec="seconds"))


def _moved(move: registry_pb2.AliasMove) -> str:
    was = move.previous_version or "unset"
    return f"{move.model}: alias {move.alias} -> version {move.version} (was {was})"


async def run_register(args: argparse.Namespace) -> int:
    tags = dict(item.split("=", 1) for item in args.tag)

    async def work(client: DriftloopClient) -> None:
        started = time.monotonic()
        if args.data is not None:
            if not args.target:
                raise SystemExit("driftloop: --target is required with --data")
            print(
                f"training the linear model on {args.data} (target {args.target!r}) ...", flush=True
            )
            record = await client.register_from_data(
                args.model,
                args.data,
                target=args.target,
                task=args.task,
                seed=args.seed,
                l2=args.l2,
                parent_version=args.parent,
                tags=tags,
            )
        else:
            if not (args.flavor and args.schema and args.output_kind):
                raise SystemExit("driftloop: --artifact needs --flavor, --schema and --output-kind")
            spec = json.loads(await asyncio.to_thread(args.schema.read_text))
            schema = Schema(tuple(Feature(name, kind) for name, kind in spec.items()))
            digest = await client.upload_artifact(await asyncio.to_thread(args.artifact.read_bytes))
            record = await client.register(
                registry_pb2.ModelVersion(
                    model=args.model,
                    flavor=args.flavor,
                    artifact_sha256=digest,
                    schema=schema_to_proto(schema),
                    output_kind=OUTPUT_KINDS[args.output_kind],
                    entry_point=args.entry_point,
                    parent_version=args.parent,
                    tags=tags,
                )
            )
        metrics = ", ".join(f"{m.name}={m.value:.4f}" for m in record.metrics)
        print(
            f"registered {record.model} version {record.version} ({record.flavor}, artifact "
            f"{record.artifact_sha256[:12]}…) in {time.monotonic() - started:.1f} s"
            + (f"; holdout {metrics}" if metrics else "")
        )
        if args.alias:
            move = await client.set_alias(
                args.model, args.alias, record.version, reason="set at registration"
            )
            print(_moved(move))

    return await with_client(work)


async def run_list(args: argparse.Namespace) -> int:
    async def work(client: DriftloopClient) -> None:
        versions = await client.list_versions(args.model)
        if not versions:
            print(f"{args.model} has no versions")
            return
        header = ("version", "created (UTC)", "flavor", "parent", "aliases", "metrics")
        print("{:>7}  {:<25} {:<7} {:>6}  {:<20} {}".format(*header))
        for v in versions:
            metrics = " ".join(f"{m.name}={m.value:.3f}" for m in v.metrics)
            parent, aliases = v.parent_version or "-", ",".join(v.aliases) or "-"
            print(
                f"{v.version:>7}  {_time(v.created):<25} {v.flavor:<7} {parent:>6}  "
                f"{aliases:<20} {metrics}"
            )

    return await with_client(work)


async def run_show(args: argparse.Namespace) -> int:
    async def work(client: DriftloopClient) -> None:
        chain = await client.lineage(args.model, args.version)
        for record in chain:
            if not args.with_baseline:
                record.ClearField("baseline")
        print_json(chain[0])
        if len(chain) > 1:
            print("lineage: " + " <- ".join(f"v{r.version}" for r in chain))

    return await with_client(work)


async def run_alias(args: argparse.Namespace) -> int:
    async def work(client: DriftloopClient) -> None:
        move = await client.set_alias(
            args.model, args.alias, args.version, expected_version=args.expected, reason=args.reason
        )
        print(_moved(move))

    return await with_client(work)


async def run_history(args: argparse.Namespace) -> int:
    async def work(client: DriftloopClient) -> None:
        moves = await client.alias_history(args.model, args.alias)
        if args.at:
            at = dt.datetime.fromisoformat(args.at)
            at = at if at.tzinfo else at.replace(tzinfo=dt.UTC)
            for alias in sorted({m.alias for m in moves}):
                record = await client.resolve_alias(args.model, alias, at)
                print(f"{alias} at {at.isoformat()}: version {record.version}")
            return
        for m in moves:
            print(
                f"{_time(m.time)}  {m.alias:<12} {m.previous_version or '-':>4} -> {m.version:<4} "
                f"by {m.actor}: {m.reason}"
            )

    return await with_client(work)


async def run_predict(args: argparse.Namespace) -> int:
    async def work(client: DriftloopClient) -> None:
        if args.gateway and args.row:
            row = json.loads(args.row)
            print_json(await client.serve(args.model, row, entity_key=args.entity_key))
            return
        if args.row:
            response = await client.predict(args.model, args.version, json.loads(args.row))
            print_json(response)
            return
        text = await asyncio.to_thread(args.rows.read_text)
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        batch = await client.predict_batch(args.model, args.version, rows)
        for output in batch.outputs:
            print(json_format.MessageToJson(output, indent=None, preserving_proto_field_name=True))

    return await with_client(work)
