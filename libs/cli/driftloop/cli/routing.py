"""`driftloop routing ...`: routing policies and rollouts through the gateway."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from driftloop.cli.calls import UsageError, print_json, with_client

if TYPE_CHECKING:  # the client and gRPC are imported when a command runs
    from driftloop.client import DriftloopClient
    from driftloop.v1 import events_pb2


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    routing = sub.add_parser("routing", help="routing policies and rollouts (through the gateway)")
    actions = routing.add_subparsers(dest="action", required=True)

    show = actions.add_parser("show", help="the model's routing policy (JSON)")
    show.add_argument("--model", required=True)
    show.set_defaults(run=run_show)

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


async def run_show(args: argparse.Namespace) -> int:
    async def work(client: DriftloopClient) -> None:
        print_json(await client.routing_policy(args.model))

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
        print_json(await client.set_routing_policy(policy, current.revision))

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
