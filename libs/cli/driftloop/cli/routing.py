"""`driftloop routing ...`: routing policies and rollouts through the gateway."""

from __future__ import annotations

import argparse
import datetime as dt
from typing import TYPE_CHECKING

from driftloop.cli.calls import UsageError, print_json, show, with_client

if TYPE_CHECKING:  # the client and gRPC are imported when a command runs
    from google.protobuf.timestamp_pb2 import Timestamp

    from driftloop.client import DriftloopClient
    from driftloop.v1 import events_pb2


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    routing = sub.add_parser("routing", help="routing policies and rollouts (through the gateway)")
    actions = routing.add_subparsers(dest="action", required=True)

    policy = actions.add_parser("show", help="the model's routing policy")
    policy.add_argument("--model", required=True)
    policy.set_defaults(run=run_show)

    stable = actions.add_parser("set", help="serve one version, or A/B variants")
    stable.add_argument("--model", required=True)
    stable.add_argument("--stable", required=True, help="the stable version")
    stable.add_argument(
        "--ab", action="append", default=[], help="name=version:percent (repeatable)"
    )
    stable.add_argument(
        "--shadow", action="append", default=[], help="a shadow version (repeatable)"
    )
    stable.add_argument("--shadow-percent", type=float, default=100.0)
    stable.add_argument("--salt", default="", help="the A/B hash salt (default: the model name)")
    stable.set_defaults(run=run_set)

    rollout = actions.add_parser("rollout", help="start a canary or blue-green rollout")
    rollout.add_argument("--model", required=True)
    rollout.add_argument("--candidate", required=True)
    rollout.add_argument("--strategy", choices=["canary", "blue-green"], default="canary")
    rollout.add_argument(
        "--hold-s", type=int, default=0, help="blue-green hold period (0: the gateway's default)"
    )
    rollout.add_argument("--reason", default="")
    rollout.add_argument(
        "--shadow-first",
        type=int,
        default=0,
        metavar="N",
        help="canary only: mirror the candidate until N requests are compared (and "
        "--shadow-labelled of them labelled); the canary starts only if the shadow was not "
        "significantly worse",
    )
    rollout.add_argument(
        "--shadow-labelled", type=int, default=0, metavar="M", help="with --shadow-first"
    )
    rollout.set_defaults(run=run_rollout)

    for name, helptext in (
        ("promote", "promote the running rollout now"),
        ("rollback", "roll the running rollout back"),
    ):
        command = actions.add_parser(name, help=helptext)
        command.add_argument("--model", required=True)
        command.add_argument("--reason", default="")
        command.set_defaults(run=run_promote if name == "promote" else run_rollback)


def _percent(basis_points: int) -> str:
    return f"{basis_points / 100:g}%"


def _when(stamp: Timestamp) -> str:
    return f"{stamp.ToDatetime(dt.UTC):%Y-%m-%d %H:%M:%S}"


def format_policy(policy: events_pb2.RoutingPolicy) -> str:
    """A routing policy as a person reads it: what serves, then each plan in force."""
    updated = f", updated {_when(policy.updated)}" if policy.HasField("updated") else ""
    by = f" by {policy.updated_by}" if policy.updated_by else ""
    lines = [
        f"{policy.model}: stable version {policy.stable_version} "
        f"(revision {policy.revision}{updated}{by})"
    ]
    if policy.variants:
        arms = ", ".join(
            f"{v.name} = version {v.version} {_percent(v.weight_bp)}" for v in policy.variants
        )
        lines.append(f"  A/B: {arms} (salt {policy.salt!r})")
    if policy.HasField("canary"):
        canary = policy.canary
        steps = " -> ".join(_percent(step.weight_bp) for step in canary.steps)
        step = min(canary.current_step, max(len(canary.steps) - 1, 0))
        now = _percent(canary.steps[step].weight_bp) if canary.steps else "0%"
        lines.append(
            f"  canary: version {canary.candidate_version} at {now}, step {step + 1} of "
            f"{len(canary.steps)} ({steps})"
        )
    if policy.HasField("blue_green"):
        blue_green = policy.blue_green
        hold = _when(blue_green.hold_until) if blue_green.HasField("hold_until") else "-"
        lines.append(
            f"  blue-green: version {blue_green.active_version} active since "
            f"{_when(blue_green.switched)}; version {policy.stable_version} kept loaded until "
            f"{hold}"
        )
    if policy.HasField("shadow_gate"):
        gate = policy.shadow_gate
        labelled = f" ({gate.min_labelled:,} of them labelled)" if gate.min_labelled else ""
        lines.append(
            f"  shadow first: version {gate.candidate_version} mirrored until "
            f"{gate.min_compared:,} requests are compared{labelled}, then its canary"
        )
    if policy.HasField("shadow") and policy.shadow.versions:
        versions = ", ".join(policy.shadow.versions)
        lines.append(
            f"  shadow: version(s) {versions} on {_percent(policy.shadow.sample_bp)} of requests"
        )
    return "\n".join(lines)


async def run_show(args: argparse.Namespace) -> int:
    async def work(client: DriftloopClient) -> None:
        policy = await client.routing_policy(args.model)
        show(args.json, policy, lambda: format_policy(policy))

    return await with_client(work)


def _variant(text: str) -> events_pb2.Variant:
    from driftloop.v1 import events_pb2

    try:
        name, rest = text.split("=", 1)
        version, percent = rest.split(":", 1)
        return events_pb2.Variant(name=name, version=version, weight_bp=round(float(percent) * 100))
    except ValueError:
        raise UsageError(f"--ab {text!r} is not name=version:percent") from None


async def run_set(args: argparse.Namespace) -> int:
    from driftloop.client.errors import NotFound
    from driftloop.v1 import events_pb2

    async def work(client: DriftloopClient) -> None:
        try:
            current = await client.routing_policy(args.model)
        except NotFound:
            current = events_pb2.RoutingPolicy()
        policy = events_pb2.RoutingPolicy(
            model=args.model,
            stable_version=args.stable,
            salt=args.salt or current.salt or args.model,
            variants=[_variant(item) for item in args.ab],
            shadow=events_pb2.ShadowPlan(
                versions=args.shadow, sample_bp=round(args.shadow_percent * 100)
            )
            if args.shadow
            else None,
        )
        stored = await client.set_routing_policy(policy, current.revision)
        show(args.json, stored, lambda: format_policy(stored))

    return await with_client(work)


async def run_rollout(args: argparse.Namespace) -> int:
    async def work(client: DriftloopClient) -> None:
        policy = await client.start_rollout(
            args.model,
            args.candidate,
            args.strategy,
            hold_s=args.hold_s,
            reason=args.reason,
            shadow_min_compared=args.shadow_first,
            shadow_min_labelled=args.shadow_labelled,
        )
        if args.json:
            print_json(policy)
            return
        shadow = " (shadow first)" if policy.shadow_gate.candidate_version else ""
        print(
            f"{policy.model}: {args.strategy} rollout of version {args.candidate}{shadow} "
            f"started; version {policy.stable_version} is stable (revision {policy.revision})"
        )

    return await with_client(work)


async def run_promote(args: argparse.Namespace) -> int:
    async def work(client: DriftloopClient) -> None:
        policy = await client.promote(args.model, args.reason)
        if args.json:
            print_json(policy)
            return
        stable, revision = policy.stable_version, policy.revision
        print(f"{policy.model}: version {stable} is stable (revision {revision})")

    return await with_client(work)


async def run_rollback(args: argparse.Namespace) -> int:
    async def work(client: DriftloopClient) -> None:
        policy = await client.rollback(args.model, args.reason)
        if args.json:
            print_json(policy)
            return
        stable, revision = policy.stable_version, policy.revision
        print(f"{policy.model}: rolled back; version {stable} serves (revision {revision})")

    return await with_client(work)
