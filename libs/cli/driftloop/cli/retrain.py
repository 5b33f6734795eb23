"""`driftloop retrain ...`: continuous training from a shell: trigger and follow runs, read
their steps, data checks and gate verdicts, the decisions behind them, and the policy.

Every command takes --json (the API's message as JSON on stdout, nothing else). Expected
failures (an error from the service, a run id that does not exist, a wait that timed out,
options that do not go together) are one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from driftloop.cli.calls import print_json, show, table, with_client
from driftloop.cli.failures import UsageError
from driftloop.v1 import events_pb2, retrainer_pb2

if TYPE_CHECKING:  # the client and gRPC are imported when a command runs
    from google.protobuf.timestamp_pb2 import Timestamp

    from driftloop.client import DriftloopClient

OUTCOME_WIDTH = 100


# Output helpers.


def enum_name(enum: Any, value: int, prefix: str) -> str:
    """`RUN_STATE_REJECTED_DATA` -> "rejected_data"; an unknown number as itself."""
    try:
        name: str = enum.Name(value)
    except ValueError:
        return str(value)
    return name.removeprefix(prefix).lower()


def trigger_name(trigger: int) -> str:
    return enum_name(retrainer_pb2.RetrainTrigger, trigger, "RETRAIN_TRIGGER_")


def state_name(state: int) -> str:
    return enum_name(retrainer_pb2.RunState, state, "RUN_STATE_")


def step_state_name(state: int) -> str:
    return enum_name(retrainer_pb2.StepState, state, "STEP_STATE_")


def when(stamp: Timestamp) -> str:
    if stamp.seconds == 0 and stamp.nanos == 0:
        return "-"
    return f"{stamp.ToDatetime(tzinfo=dt.UTC):%Y-%m-%d %H:%M:%S}"


def seconds(started: Timestamp, finished: Timestamp) -> float | None:
    if finished.seconds == 0 and finished.nanos == 0:
        return None
    return (finished.ToNanoseconds() - started.ToNanoseconds()) / 1e9


def one_line(text: str, width: int = OUTCOME_WIDTH) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def versions(run: retrainer_pb2.RetrainRun) -> str:
    parent = f"v{run.parent_version}" if run.parent_version else "-"
    return f"{parent} -> v{run.new_version}" if run.new_version else f"{parent} -> -"


def step_line(step: retrainer_pb2.RetrainStep, name_width: int = 9) -> str:
    took = seconds(step.started, step.finished)
    duration = "-" if took is None else f"{took:.1f} s"
    state = step_state_name(step.state)
    return f"  {step.name:<{name_width}} {state:<9} {duration:>8}  {step.detail}"


def format_summary(run: retrainer_pb2.RetrainRun) -> str:
    lines = [f"run {run.run_id} {state_name(run.state)}: {run.outcome}"]
    if run.new_version:
        lines.append(f"new version: {run.model} v{run.new_version} (parent v{run.parent_version})")
    if run.rollout_outcome:
        lines.append(f"rollout: {run.rollout_outcome}")
    lines.append(f"details: driftloop retrain show {run.run_id}")
    return "\n".join(lines)


def format_run(run: retrainer_pb2.RetrainRun) -> str:
    window = run.data_window
    lines = [
        f"run {run.run_id} of {run.model}: {state_name(run.state)}",
        f"  trigger     {trigger_name(run.trigger)}: {run.reason or '-'}",
        f"  evidence    {run.evidence or '-'}",
        f"  created     {when(run.created)}, updated {when(run.updated)} (UTC)",
        f"  window      {when(window.start)} to {when(window.end)}",
        f"  snapshot    {run.snapshot_id or '-'} (seed {run.seed})",
        f"  rows        {run.training_rows:,} training, {run.holdout_rows:,} holdout",
        f"  versions    {versions(run)}",
        f"  artifact    {run.artifact_sha256 or '-'}",
        "steps",
    ]
    width = max((len(step.name) for step in run.steps), default=0)
    lines += [step_line(step, width) for step in run.steps] or ["  (none yet)"]
    lines += format_data_checks(run.data_checks)
    lines += format_gate(run)
    lines.append(f"rollout: {run.rollout_outcome or '-'}")
    lines.append(f"outcome: {' '.join(run.outcome.split()) or '-'}")
    return "\n".join(lines)


def format_data_checks(checks: Sequence[retrainer_pb2.DataCheck]) -> list[str]:
    if not checks:
        return ["data checks: none ran"]
    failed = [c for c in checks if not c.passed and c.severity != "warning"]
    warned = [c for c in checks if not c.passed and c.severity == "warning"]
    passed = len(checks) - len(failed) - len(warned)
    warnings = f"{len(warned)} warning" + ("" if len(warned) == 1 else "s")
    lines = [f"data checks: {passed} passed, {len(failed)} failed, {warnings}"]
    for label, group in (("FAILED ", failed), ("warning", warned)):
        for check in group:
            where = f" {check.feature}" if check.feature else ""
            lines.append(
                f"  {label} {check.name}{where}: observed {check.observed:.4g}, "
                f"threshold {check.threshold:.4g}: {check.message}"
            )
    return lines


TEST_NAMES = {"mcnemar": "McNemar", "wilcoxon": "Wilcoxon", "paired_bootstrap": "bootstrap"}


def format_gate(run: retrainer_pb2.RetrainRun) -> list[str]:
    gate = run.gate
    if not gate.checks:
        return ["gate: not reached"]
    lines = [f"gate: {'passed' if gate.passed else 'FAILED'}"]
    header = (
        "check",
        "metric",
        "test",
        "champion",
        "challenger",
        "effect",
        "CI",
        "p-value",
        "rows",
        "result",
    )
    rows = [
        (
            check.name + (f" {check.segment}" if check.segment else ""),
            check.metric,
            TEST_NAMES.get(check.test, check.test),
            f"{check.champion:.4f}",
            f"{check.challenger:.4f}",
            f"{check.effect:+.4f}",
            f"[{check.ci_low:+.4f}, {check.ci_high:+.4f}]",
            "-" if math.isnan(check.p_value) else f"{check.p_value:.3g}",
            f"{check.rows:,}",
            "pass" if check.passed else "FAIL",
        )
        for check in gate.checks
    ]
    lines += ["  " + line for line in table(header, rows).splitlines()]
    lines += [f"  {check.name}: {check.detail}" for check in gate.checks if check.detail]
    lines += [f"  why not: {reason}" for reason in gate.reasons]
    return lines


def format_runs(model: str, runs: Sequence[retrainer_pb2.RetrainRun]) -> str:
    if not runs:
        return f"{model} has no retraining runs"
    header = ("run id", "created (UTC)", "trigger", "state", "versions", "rollout", "outcome")
    rows = [
        (
            run.run_id,
            when(run.created),
            trigger_name(run.trigger),
            state_name(run.state),
            versions(run),
            run.rollout_outcome or "-",
            one_line(run.outcome) or "-",
        )
        for run in runs
    ]
    return table(header, rows)


def format_decisions(model: str, decisions: Sequence[retrainer_pb2.RetrainDecision]) -> str:
    if not decisions:
        return f"{model} has no retraining decisions"
    header = ("time (UTC)", "trigger", "decision", "run id", "evidence", "reason")
    rows = [
        (
            when(d.time),
            trigger_name(d.trigger),
            "run" if d.triggered else "skipped",
            d.run_id or "-",
            one_line(d.evidence, 40) or "-",
            one_line(d.reason),
        )
        for d in decisions
    ]
    return table(header, rows)


# The training policy: one description per field, for `policy get` and `policy set`.


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"{value} is not in 0..4294967295")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _on_off(text: str) -> bool:
    if text not in ("on", "off"):
        raise argparse.ArgumentTypeError(f"{text!r}: on or off")
    return text == "on"


def _words(text: str) -> list[str]:
    return [word.strip() for word in text.split(",") if word.strip()]


DRIFT_KINDS = {"data", "prediction", "concept"}


def _kinds(text: str) -> list[int]:
    words = _words(text)
    if words == ["all"]:
        return []
    wrong = [word for word in words if word not in DRIFT_KINDS]
    if wrong:
        raise argparse.ArgumentTypeError(
            f"{', '.join(wrong)}: kinds are data, prediction, concept (or all)"
        )
    return [events_pb2.DriftKind.Value(f"DRIFT_KIND_{word.upper()}") for word in words]


def _severity(text: str) -> int:
    if text not in ("info", "warning", "critical"):
        raise argparse.ArgumentTypeError(f"{text!r}: info, warning or critical")
    return events_pb2.Severity.Value(f"SEVERITY_{text.upper()}")


ROLLOUTS = {
    "none": retrainer_pb2.ROLLOUT_ON_PASS_NONE,
    "canary": retrainer_pb2.ROLLOUT_ON_PASS_CANARY,
    "blue-green": retrainer_pb2.ROLLOUT_ON_PASS_BLUE_GREEN,
}


def _rollout(text: str) -> int:
    if text not in ROLLOUTS:
        raise argparse.ArgumentTypeError(f"{text!r}: none, canary or blue-green")
    return ROLLOUTS[text]


def _steps(text: str) -> list[int]:
    try:
        steps = [int(word) for word in _words(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: percents, like 10,50,100") from None
    if steps and (steps != sorted(steps) or steps[0] <= 0 or steps[-1] > 100):
        raise argparse.ArgumentTypeError(f"{text!r}: rising percents from above 0 to 100")
    return steps


def _show_on_off(value: Any) -> str:
    return "on" if value else "off"


def _show_seconds(value: Any) -> str:
    return f"{value:,} s"


def _show_seconds_or_off(value: Any) -> str:
    return f"{value:,} s" if value else "0 (off)"


def _show_count(value: Any) -> str:
    return f"{value:,}"


def _show_count_or_off(value: Any) -> str:
    return f"{value:,}" if value else "0 (off)"


def _show_number(value: Any) -> str:
    return f"{value:g}"


def _show_number_or_unused(value: Any) -> str:
    return f"{value:g}" if value else "0 (unused)"


def _show_kinds(value: Any) -> str:
    names = [enum_name(events_pb2.DriftKind, kind, "DRIFT_KIND_") for kind in value]
    return ",".join(names) or "all"


def _show_severity(value: Any) -> str:
    return enum_name(events_pb2.Severity, value, "SEVERITY_")


def _show_rollout(value: Any) -> str:
    names = {number: name for name, number in ROLLOUTS.items()}
    return names.get(value, str(value))


def _show_steps(value: Any) -> str:
    return ",".join(str(step) for step in value) or "(the gateway's default)"


def _show_text(value: Any) -> str:
    return str(value) or "(none)"


@dataclass(frozen=True)
class PolicyField:
    path: str
    flag: str
    parse: Callable[[str], Any]
    show: Callable[[Any], str]
    help: str
    metavar: str = "N"


FIELDS = (
    PolicyField(
        "schedule.every_s",
        "--schedule-every-s",
        _count,
        _show_seconds_or_off,
        "run every N seconds, aligned to the epoch (0: off)",
    ),
    PolicyField(
        "performance.enabled",
        "--performance",
        _on_off,
        _show_on_off,
        "trigger on the champion's labelled performance",
        "on|off",
    ),
    PolicyField(
        "performance.max_drop",
        "--max-drop",
        _number,
        _show_number,
        "accuracy below the holdout's by more than this (regression: MAE share) triggers",
        "X",
    ),
    PolicyField(
        "performance.min_accuracy",
        "--min-accuracy",
        _number,
        _show_number_or_unused,
        "accuracy below this triggers too (0: unused)",
        "X",
    ),
    PolicyField(
        "performance.window_s",
        "--performance-window-s",
        _count,
        _show_seconds,
        "judge the champion on the labelled predictions of the last N seconds",
    ),
    PolicyField(
        "performance.min_labelled",
        "--min-labelled",
        _count,
        _show_count,
        "and only with at least N labelled predictions",
    ),
    PolicyField(
        "drift.enabled",
        "--drift",
        _on_off,
        _show_on_off,
        "trigger on drift alerts",
        "on|off",
    ),
    PolicyField(
        "drift.kinds",
        "--drift-kinds",
        _kinds,
        _show_kinds,
        "alert kinds that trigger: data,prediction,concept or all",
        "KINDS",
    ),
    PolicyField(
        "drift.min_severity",
        "--min-severity",
        _severity,
        _show_severity,
        "the least severe alert that triggers: info, warning or critical",
        "LEVEL",
    ),
    PolicyField(
        "new_data.min_new_labelled",
        "--new-labelled",
        _count,
        _show_count_or_off,
        "run once N labelled predictions arrived since the champion's data ended (0: off)",
    ),
    PolicyField(
        "cooldown_s",
        "--cooldown-s",
        _count,
        _show_seconds,
        "after a run starts, automatic triggers wait N seconds",
    ),
    PolicyField(
        "training.window_s",
        "--window-s",
        _count,
        _show_seconds,
        "train on the labelled live traffic of the last N seconds",
    ),
    PolicyField(
        "training.max_rows",
        "--max-rows",
        _count,
        _show_count,
        "the newest N rows of the window at most",
    ),
    PolicyField(
        "training.holdout_fraction",
        "--holdout-fraction",
        _number,
        _show_number,
        "the newest share of the window, held out for the gate",
        "X",
    ),
    PolicyField(
        "training.min_rows",
        "--min-rows",
        _count,
        _show_count,
        "fewer rows than this halt the run at validation",
    ),
    PolicyField("training.l2", "--l2", _number, _show_number, "the L2 penalty of the refit", "X"),
    PolicyField("training.seed", "--seed", _integer, str, "the training seed"),
    PolicyField(
        "gate.margin",
        "--margin",
        _number,
        _show_number,
        "the challenger must beat the champion by at least this",
        "X",
    ),
    PolicyField("gate.alpha", "--alpha", _number, _show_number, "with a p-value below this", "X"),
    PolicyField(
        "gate.secondary_tolerance",
        "--secondary-tolerance",
        _number,
        _show_number,
        "how much worse (relative) the secondary metric may be",
        "X",
    ),
    PolicyField(
        "gate.segment_feature",
        "--segment-feature",
        str,
        _show_text,
        "judge each segment of this categorical feature too ('' for none)",
        "NAME",
    ),
    PolicyField(
        "gate.segment_tolerance",
        "--segment-tolerance",
        _number,
        _show_number,
        "how much worse a segment may be",
        "X",
    ),
    PolicyField(
        "gate.segment_min_rows",
        "--segment-min-rows",
        _count,
        _show_count,
        "segments with fewer holdout rows are not judged",
    ),
    PolicyField(
        "rollout.on_pass",
        "--rollout",
        _rollout,
        _show_rollout,
        "what a passing challenger gets: none (the challenger alias), canary or blue-green",
        "KIND",
    ),
    PolicyField(
        "rollout.steps_percent",
        "--steps",
        _steps,
        _show_steps,
        "canary steps in percent of traffic, like 10,50,100 ('' for the gateway's default)",
        "PERCENTS",
    ),
    PolicyField(
        "rollout.min_requests",
        "--min-requests",
        _count,
        _show_count,
        "requests each canary step needs",
    ),
    PolicyField(
        "rollout.min_duration_s",
        "--min-duration-s",
        _count,
        _show_seconds,
        "seconds each canary step lasts at least",
    ),
)


def _dest(field: PolicyField) -> str:
    return "set_" + field.path.replace(".", "_")


def _parent(policy: retrainer_pb2.TrainingPolicy, path: str) -> tuple[Any, str]:
    *parents, leaf = path.split(".")
    target: Any = policy
    for parent in parents:
        target = getattr(target, parent)
    return target, leaf


def field_value(policy: retrainer_pb2.TrainingPolicy, path: str) -> Any:
    target, leaf = _parent(policy, path)
    return getattr(target, leaf)


def set_field(policy: retrainer_pb2.TrainingPolicy, path: str, value: Any) -> None:
    target, leaf = _parent(policy, path)
    if isinstance(value, list):
        repeated = getattr(target, leaf)
        del repeated[:]
        repeated.extend(value)
    else:
        setattr(target, leaf, value)


def format_policy(policy: retrainer_pb2.TrainingPolicy) -> str:
    if policy.revision:
        by = policy.updated_by or "unknown"
        written = f"revision {policy.revision}, updated {when(policy.updated)} UTC by {by}"
    else:
        written = "revision 0: the defaults (never written)"
    rows = [("enabled", "yes" if policy.enabled else "no", "--enabled/--disabled")]
    rows += [(f.path, f.show(field_value(policy, f.path)), f.flag) for f in FIELDS]
    lines = [f"{policy.model}: training policy, {written}"]
    lines += ["  " + line for line in table(("field", "value", "set with"), rows).splitlines()]
    if not policy.enabled:
        lines.append("  (disabled: no automatic trigger; a manual trigger still runs)")
    return "\n".join(lines)


# The commands.


async def call(work: Callable[[DriftloopClient], Awaitable[int]]) -> int:
    """Run `work` with a client from the environment (calls.with_client); expected failures
    (UsageError, a wait's TimeoutError, a refused call) reach the CLI's error boundary,
    which prints them as one line with exit status 2."""
    return await with_client(work)


def _instant(text: str) -> dt.datetime:
    try:
        at = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO time") from None
    return at if at.tzinfo else at.replace(tzinfo=dt.UTC)


def _command(
    actions: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    summary: str,
    example: str,
) -> argparse.ArgumentParser:
    command = actions.add_parser(
        name,
        help=summary,
        description=f"{summary[0].upper()}{summary[1:]}.\n\nexample:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    command.add_argument(
        "--json", action="store_true", help="print the API's message as JSON, nothing else"
    )
    return command


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    retrain = sub.add_parser(
        "retrain",
        help="continuous training: runs, their decisions and the training policy",
        description=(
            "Continuous training through the retrainer service (DRIFTLOOP_REGISTRY_TARGET; "
            "admin calls send DRIFTLOOP_ADMIN_TOKEN).\n\nexample:\n"
            "  driftloop retrain trigger churn --reason 'labels flipped' --wait"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = retrain.add_subparsers(dest="action", required=True)

    trigger = _command(
        actions,
        "trigger",
        "start a retraining run of a model now (admin)",
        "driftloop retrain trigger churn --reason 'labels flipped' --wait",
    )
    trigger.add_argument("model", metavar="MODEL")
    trigger.add_argument("--reason", default="", help="why (recorded with the run)")
    trigger.add_argument(
        "--snapshot", default="", metavar="ID", help="train on this stored snapshot again"
    )
    trigger.add_argument(
        "--seed", type=_integer, help="with --snapshot: the seed (default: the policy's)"
    )
    trigger.add_argument(
        "--start", type=_instant, help="ISO time: train on [start, end) instead of the policy's"
    )
    trigger.add_argument("--end", type=_instant, help="ISO time, with --start")
    trigger.add_argument(
        "--wait",
        action="store_true",
        help="follow the run until it ends (exit status 1 when it did not succeed)",
    )
    trigger.add_argument(
        "--timeout-s", type=float, default=600.0, help="with --wait: give up after this long"
    )
    trigger.set_defaults(run=run_trigger)

    runs = _command(
        actions,
        "runs",
        "a model's retraining runs, newest first",
        "driftloop retrain runs churn --limit 5",
    )
    runs.add_argument("model", metavar="MODEL")
    runs.add_argument("--limit", type=_count, default=20)
    runs.set_defaults(run=run_runs)

    show = _command(
        actions,
        "show",
        "one run: trigger, steps, data checks, gate verdict, rollout and outcome",
        "driftloop retrain show churn-4f2a9c0d1e3b",
    )
    show.add_argument("run_id", metavar="RUN_ID")
    show.set_defaults(run=run_show)

    decisions = _command(
        actions,
        "decisions",
        "every trigger the retrainer considered: run, or skipped and why",
        "driftloop retrain decisions churn --limit 20",
    )
    decisions.add_argument("model", metavar="MODEL")
    decisions.add_argument("--limit", type=_count, default=50)
    decisions.set_defaults(run=run_decisions)

    policy = actions.add_parser(
        "policy",
        help="read or change a model's training policy",
        description=(
            "Read or change a model's training policy.\n\nexample:\n"
            "  driftloop retrain policy get churn"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    policy_actions = policy.add_subparsers(dest="policy_action", required=True)
    get = _command(
        policy_actions,
        "get",
        "the training policy in force, every field",
        "driftloop retrain policy get churn",
    )
    get.add_argument("model", metavar="MODEL")
    get.set_defaults(run=run_policy_get)

    put = _command(
        policy_actions,
        "set",
        "change fields of the training policy (read, change, compare-and-set; admin)",
        "driftloop retrain policy set churn --rollout canary --steps 10,50,100 --min-rows 1000",
    )
    put.add_argument("model", metavar="MODEL")
    enabled = put.add_mutually_exclusive_group()
    enabled.add_argument(
        "--enabled",
        dest="set_enabled",
        action="store_const",
        const=True,
        help="automatic triggers on",
    )
    enabled.add_argument(
        "--disabled",
        dest="set_enabled",
        action="store_const",
        const=False,
        help="automatic triggers off (a manual trigger still runs)",
    )
    for field in FIELDS:
        put.add_argument(
            field.flag,
            dest=_dest(field),
            type=field.parse,
            metavar=field.metavar,
            help=f"{field.help} ({field.path})",
        )
    put.set_defaults(run=run_policy_set)


class Progress:
    """Prints each step of a followed run once, when it has finished."""

    def __init__(self) -> None:
        self._shown = 0

    def __call__(self, run: retrainer_pb2.RetrainRun) -> None:
        steps = run.steps
        while self._shown < len(steps) and steps[self._shown].state not in (
            retrainer_pb2.STEP_STATE_UNSPECIFIED,
            retrainer_pb2.STEP_STATE_RUNNING,
        ):
            print(step_line(steps[self._shown]), flush=True)
            self._shown += 1


async def run_trigger(args: argparse.Namespace) -> int:
    async def work(client: DriftloopClient) -> int:
        if args.seed is not None and not args.snapshot:
            raise UsageError("--seed goes with --snapshot (the seed of a reproduction)")
        if (args.start is None) != (args.end is None):
            raise UsageError("give both --start and --end, or neither")
        run = await client.trigger_retrain(
            args.model,
            reason=args.reason,
            snapshot_id=args.snapshot,
            seed=args.seed or 0,
            start=args.start,
            end=args.end,
        )
        if not args.wait:
            if args.json:
                print_json(run)
            else:
                print(f"started run {run.run_id} of {run.model} ({trigger_name(run.trigger)})")
                print(f"follow it: driftloop retrain show {run.run_id}")
            return 0
        if not args.json:
            print(
                f"run {run.run_id} of {run.model} started ({trigger_name(run.trigger)}): "
                f"{run.reason}",
                flush=True,
            )
        done = await client.wait_for_run(
            run.run_id, args.timeout_s, on_update=None if args.json else Progress()
        )
        if args.json:
            print_json(done)
        else:
            print(format_summary(done))
        return 0 if done.state == retrainer_pb2.RUN_STATE_SUCCEEDED else 1

    return await call(work)


async def run_runs(args: argparse.Namespace) -> int:
    async def work(client: DriftloopClient) -> int:
        runs = await client.retrain_runs(args.model, args.limit)
        show(
            args.json,
            retrainer_pb2.ListRetrainRunsResponse(runs=runs),
            lambda: format_runs(args.model, runs),
        )
        return 0

    return await call(work)


async def run_show(args: argparse.Namespace) -> int:
    async def work(client: DriftloopClient) -> int:
        run = await client.retrain_run(args.run_id)
        show(args.json, run, lambda: format_run(run))
        return 0

    return await call(work)


async def run_decisions(args: argparse.Namespace) -> int:
    async def work(client: DriftloopClient) -> int:
        decisions = await client.retrain_decisions(args.model, args.limit)
        show(
            args.json,
            retrainer_pb2.ListRetrainDecisionsResponse(decisions=decisions),
            lambda: format_decisions(args.model, decisions),
        )
        return 0

    return await call(work)


async def run_policy_get(args: argparse.Namespace) -> int:
    async def work(client: DriftloopClient) -> int:
        policy = await client.training_policy(args.model)
        show(args.json, policy, lambda: format_policy(policy))
        return 0

    return await call(work)


async def run_policy_set(args: argparse.Namespace) -> int:
    changes: list[tuple[str, Any]] = []
    if args.set_enabled is not None:
        changes.append(("enabled", args.set_enabled))
    for field in FIELDS:
        value = getattr(args, _dest(field))
        if value is not None:
            changes.append((field.path, value))

    async def work(client: DriftloopClient) -> int:
        if not changes:
            raise UsageError("nothing to change: give at least one option (see --help)")
        current = await client.training_policy(args.model)
        policy = retrainer_pb2.TrainingPolicy()
        policy.CopyFrom(current)
        policy.model = args.model
        for path, value in changes:
            set_field(policy, path, value)
        written = await client.set_training_policy(policy, current.revision)
        if args.json:
            print_json(written)
            return 0
        shows = {f.path: f.show for f in FIELDS} | {"enabled": lambda v: "yes" if v else "no"}
        for path, _ in changes:
            before, after = field_value(current, path), field_value(written, path)
            print(f"{path}: {shows[path](before)} -> {shows[path](after)}")
        print(format_policy(written))
        return 0

    return await call(work)
