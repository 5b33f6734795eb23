"""`driftloop models ...` and `driftloop predict`: the registry and inference from a shell."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from driftloop.cli.calls import UsageError, as_dict, print_json, with_client

if TYPE_CHECKING:  # the client, gRPC and the models are imported when a command runs
    from driftloop.client import DriftloopClient
    from driftloop.models.schema import Schema
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
        "--artifact",
        type=Path,
        help="a model trained elsewhere: a scikit-learn file (skops; pickle/joblib only with "
        "--trust-pickle), an ONNX file, an MLflow model directory of either, a river pickle "
        "or a python-flavor file",
    )
    register.add_argument(
        "--target", help="the label column (of --data, or of --reference-data and --holdout)"
    )
    register.add_argument(
        "--reference-data",
        type=Path,
        help="with --artifact: data like the model's training data (.csv or .parquet); the "
        "drift baseline is computed from it (and the schema, unless --schema or an MLflow "
        "signature gives it). Without it the version has no baseline",
    )
    register.add_argument(
        "--holdout",
        type=Path,
        help="with --artifact: labelled data (.csv or .parquet, with --target) for the holdout "
        "metrics concept drift is compared with",
    )
    register.add_argument(
        "--trust-pickle",
        action="store_true",
        help="accept a scikit-learn pickle or joblib file: loading one runs any code it names "
        "(in this process and in the inference service), so only for files you trust",
    )
    register.add_argument(
        "--task", default="auto", choices=["auto", "binary", "multiclass", "regression"]
    )
    register.add_argument("--seed", type=int, default=0)
    register.add_argument("--l2", type=float, default=1.0)
    register.add_argument(
        "--flavor",
        choices=["sklearn", "onnx", "river", "python"],
        help="with --artifact (an MLflow directory says its own)",
    )
    register.add_argument(
        "--schema",
        type=Path,
        help='with --artifact: JSON {"age": "number", "plan": "category"} (or '
        '{"kind": "number", "allow_nan": true} for a feature that may be NaN)',
    )
    register.add_argument(
        "--output-kind",
        choices=["binary", "multiclass", "regression"],
        help="with --artifact: default, what the model says (a classifier's classes)",
    )
    register.add_argument("--entry-point", default="", help="python flavor: module:Class")
    register.add_argument("--parent", default="", help="the version this one was retrained from")
    register.add_argument(
        "--tag", action="append", type=key_value, default=[], help="key=value (repeatable)"
    )
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
    history.add_argument(
        "--at", type=iso_time, help="ISO time: which version each alias pointed to then"
    )
    history.set_defaults(run=run_history)

    predict = sub.add_parser(
        "predict",
        help="predict one row (JSON) or a JSON-lines file of rows, through the gateway",
        description="Predict through the gateway (routed by the model's policy, logged, "
        "watched for drift), or straight from inference with --direct (a given --version, "
        "not logged: for checking a version before it serves).",
    )
    predict.add_argument("--model", required=True)
    predict.add_argument(
        "--version", default="champion", help="with --direct: a number or an alias"
    )
    rows = predict.add_mutually_exclusive_group(required=True)
    rows.add_argument("--row", type=json_row, help='JSON object: {"age": 41, "plan": "pro"}')
    rows.add_argument("--rows", type=Path, help="a file with one JSON object per line")
    predict.add_argument(
        "--direct",
        action="store_true",
        help="ask inference for --version directly: not routed, not logged, not watched",
    )
    predict.add_argument(
        "--gateway", action="store_true", help=argparse.SUPPRESS
    )  # the default now; kept so scripts that pass it still work
    predict.add_argument("--entity-key", default="", help="the sticky routing key (A/B, canary)")
    predict.add_argument(
        "--request-id",
        default="",
        help="with --row: the id labels are joined on (default: the gateway makes one)",
    )
    predict.set_defaults(run=run_predict)


def key_value(text: str) -> tuple[str, str]:
    """A --tag: key=value."""
    key, equals, value = text.partition("=")
    if not equals or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not key=value")
    return key, value


def json_row(text: str) -> dict[str, Any]:
    """A --row: one JSON object."""
    try:
        row = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(
            f"not valid JSON ({error.msg}, column {error.colno})"
        ) from None
    if not isinstance(row, dict):
        raise argparse.ArgumentTypeError(f"a JSON object is needed, not {type(row).__name__}")
    return row


def iso_time(text: str) -> dt.datetime:
    """An --at: an ISO 8601 time, UTC unless it says otherwise."""
    try:
        at = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO time") from None
    return at if at.tzinfo else at.replace(tzinfo=dt.UTC)


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a JSON-lines file; a bad line is a UsageError naming it."""
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise UsageError(f"{path} line {number}: not valid JSON ({error.msg})") from None
        if not isinstance(row, dict):
            raise UsageError(f"{path} line {number}: a JSON object is needed")
        rows.append(row)
    return rows


def _time(stamp: Any) -> str:
    return str(stamp.ToDatetime(tzinfo=dt.UTC).isoformat(timespec="seconds"))


def _moved(move: registry_pb2.AliasMove) -> str:
    was = move.previous_version or "unset"
    return f"{move.model}: alias {move.alias} -> version {move.version} (was {was})"


def _schema(spec: object) -> Schema:
    """--schema's JSON: {"age": "number", "plan": "category", "x": {"kind": "number",
    "allow_nan": true}}."""
    from driftloop.models.schema import Feature, Schema

    if not isinstance(spec, dict) or not spec:
        raise UsageError('--schema: expected a JSON object such as {"age": "number"}')
    features = []
    for name, value in spec.items():
        kind, allow_nan = (
            (value.get("kind"), bool(value.get("allow_nan")))
            if isinstance(value, dict)
            else (value, False)
        )
        if kind not in ("number", "category"):
            raise UsageError(f"--schema: {name}: the kind must be number or category")
        features.append(Feature(name, kind, allow_nan=allow_nan and kind == "number"))
    return Schema(tuple(features))


async def run_register(args: argparse.Namespace) -> int:
    tags = dict(args.tag)
    # With --json, stdout is the JSON alone: progress goes to stderr.
    progress = sys.stderr if args.json else sys.stdout

    async def work(client: DriftloopClient) -> None:
        started = time.monotonic()
        if args.data is not None:
            if not args.target:
                raise UsageError("--target is required with --data")
            if not args.data.is_file():
                raise UsageError(f"--data {args.data}: no such file")
            print(
                f"training the linear model on {args.data} (target {args.target!r}) ...",
                file=progress,
                flush=True,
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
            schema = None
            if args.schema is not None:
                schema = _schema(json.loads(await asyncio.to_thread(args.schema.read_text)))
            print(f"loading {args.artifact} ...", file=progress, flush=True)
            record = await client.register_artifact(
                args.model,
                args.artifact,
                flavor=args.flavor,
                schema=schema,
                output_kind=args.output_kind,
                reference_data=args.reference_data,
                holdout=args.holdout,
                target=args.target,
                trust_pickle=args.trust_pickle,
                entry_point=args.entry_point,
                parent_version=args.parent,
                tags=tags,
            )
            if not record.HasField("baseline"):
                print(
                    "no --reference-data: this version has no drift baseline, and its drift "
                    "reports will say so",
                    file=progress,
                )
        metrics = ", ".join(f"{m.name}={m.value:.4f}" for m in record.metrics)
        print(
            f"registered {record.model} version {record.version} ({record.flavor}, artifact "
            f"{record.artifact_sha256[:12]}…) in {time.monotonic() - started:.1f} s"
            + (f"; holdout {metrics}" if metrics else ""),
            file=progress,
        )
        move = None
        if args.alias:
            move = await client.set_alias(
                args.model, args.alias, record.version, reason="set at registration"
            )
            print(_moved(move), file=progress)
        if args.json:
            print_json({"version": as_dict(record), "alias_move": move and as_dict(move)})

    return await with_client(work)


async def run_list(args: argparse.Namespace) -> int:
    async def work(client: DriftloopClient) -> None:
        versions = await client.list_versions(args.model)
        if args.json:
            print_json({"versions": [as_dict(v) for v in versions]})
            return
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
        if args.json:
            print_json(as_dict(chain[0]) | {"lineage": [r.version for r in chain]})
        else:
            print(format_version(chain))

    return await with_client(work)


def format_version(chain: list[registry_pb2.ModelVersion]) -> str:
    """A version for people: what it is, where it came from, how it scored."""
    v = chain[0]
    data = v.data
    lines = [
        f"{v.model} version {v.version}: {v.flavor}, created {_time(v.created)} by "
        f"{v.created_by or '-'}",
        f"  aliases    {', '.join(v.aliases) or '-'}",
        f"  lineage    {' <- '.join(f'v{r.version}' for r in chain)}",
        f"  artifact   {v.artifact_sha256}",
        f"  data       {data.source or '-'} ({data.row_count:,} rows), seed {v.seed}",
        f"  metrics    {' '.join(f'{m.name}={m.value:.4f}' for m in v.metrics) or '-'}",
        f"  tags       {', '.join(f'{k}={t}' for k, t in sorted(v.tags.items())) or '-'}",
    ]
    return "\n".join(lines)


async def run_alias(args: argparse.Namespace) -> int:
    async def work(client: DriftloopClient) -> None:
        move = await client.set_alias(
            args.model, args.alias, args.version, expected_version=args.expected, reason=args.reason
        )
        print_json(move) if args.json else print(_moved(move))

    return await with_client(work)


async def run_history(args: argparse.Namespace) -> int:
    async def work(client: DriftloopClient) -> None:
        moves = await client.alias_history(args.model, args.alias)
        if args.at:
            at = args.at
            pointed = {
                alias: (await client.resolve_alias(args.model, alias, at)).version
                for alias in sorted({m.alias for m in moves})
            }
            if args.json:
                print_json({"at": at.isoformat(), "aliases": pointed})
                return
            for alias, version in pointed.items():
                print(f"{alias} at {at.isoformat()}: version {version}")
            return
        if args.json:
            print_json({"moves": [as_dict(m) for m in moves]})
            return
        for m in moves:
            print(
                f"{_time(m.time)}  {m.alias:<12} {m.previous_version or '-':>4} -> {m.version:<4} "
                f"by {m.actor}: {m.reason}"
            )

    return await with_client(work)


async def run_predict(args: argparse.Namespace) -> int:
    """One row: its answer as JSON. A file of rows: one JSON answer per line (with --json,
    one JSON array). Through the gateway unless --direct."""
    if args.direct and args.gateway:
        raise UsageError("--direct asks inference, --gateway the gateway: give one")
    if not args.direct and args.version != "champion":
        raise UsageError("--version goes with --direct: the gateway picks the version itself")

    async def work(client: DriftloopClient) -> None:
        if args.row is not None:
            if args.direct:
                print_json(
                    await client.predict(args.model, args.version, args.row, args.request_id)
                )
            else:
                print_json(
                    await client.serve(
                        args.model, args.row, entity_key=args.entity_key, request_id=args.request_id
                    )
                )
            return
        rows = await asyncio.to_thread(read_rows, args.rows)
        if args.direct:
            batch = await client.predict_batch(args.model, args.version, rows)
            answers = [as_dict(output) for output in batch.outputs]
        else:
            keys = [args.entity_key] * len(rows)
            answers = [as_dict(r) for r in await client.serve_batch(args.model, rows, keys)]
        if args.json:
            print_json(answers)
        else:
            for answer in answers:
                print(json.dumps(answer))

    return await with_client(work)
