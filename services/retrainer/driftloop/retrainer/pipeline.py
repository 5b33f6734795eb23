"""One retraining run as explicit, recorded steps:
extract -> validate -> train -> evaluate -> gate -> register -> rollout.

Each step is a row (run, step, state, start, end, inputs, outputs, detail); a step that
fails halts the run with its reason and nothing after it runs:
- extract: the model's labelled live traffic of the window, features as logged at serving
  time (no training/serving skew by construction), oldest first; the newest share is the
  holdout. Written once as a Parquet snapshot into the content-addressed artifact store
  (or read back from one: a reproduction).
- validate: the data-validation gate against the champion's schema and baseline; a
  failure halts the run (REJECTED_DATA) with a report naming each failed check.
- train + evaluate: in the worker process (jobs.py): the challenger, and both models
  scored on the holdout.
- gate: the champion/challenger verdict (gate.py); a refusal halts (REJECTED_CHALLENGER).
- register: the challenger with its lineage (parent = the champion it beat, the trigger
  and its evidence, run id, snapshot id, the gate's numbers) and the `challenger` alias.
  A run that registered before a crash is found by its run id: never registered twice.
- rollout: the policy's rollout requested from the gateway (canary or blue-green), whose
  own analysis promotes or rolls back; the outcome is recorded when model-events report it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import multiprocessing
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from driftloop.clickhouse.prediction_log import PredictionLog
from driftloop.kit.errors import DriftloopError, FailedPrecondition
from driftloop.kit.times import stamp
from driftloop.models.artifacts import ArtifactStore
from driftloop.models.convert import baseline_from_proto, baseline_to_proto
from driftloop.models.loading import VersionSpec
from driftloop.models.registration import code_version, environment
from driftloop.models.table import Table
from driftloop.models.validation import DataReport, ValidationPolicy, validate_training_data
from driftloop.retrainer import snapshot as snapshots
from driftloop.retrainer.gate import GateRules, Verdict, judge
from driftloop.retrainer.jobs import FLAVORS_TRAINED, TrainJob, TrainResult, train_and_score
from driftloop.retrainer.registry import DataLineage, NewVersion, VersionRecord
from driftloop.retrainer.runs_store import RunStore, as_json
from driftloop.retrainer.snapshot import Snapshot, split_newest
from driftloop.retrainer.triggers import TRIGGER_NAMES
from driftloop.v1 import retrainer_pb2

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"
RUN_TAG = "driftloop.run_id"
STEPS = ("extract", "validate", "train", "evaluate", "gate", "register", "rollout")


class Versions(Protocol):
    """The registry core (hosted in this service)."""

    async def get(self, model: str, version_or_alias: str) -> VersionRecord: ...

    async def versions(self, model: str) -> list[VersionRecord]: ...

    async def register(self, new: NewVersion, actor: str) -> VersionRecord: ...

    async def set_alias(
        self, model: str, alias: str, version: str, expected: str, reason: str, actor: str
    ) -> Any: ...

    async def current_alias(self, model: str, alias: str) -> str: ...


class Rollouts(Protocol):
    """Asks the gateway to roll a version out."""

    async def start(
        self, model: str, version: str, plan: retrainer_pb2.RolloutPlan, reason: str
    ) -> None: ...


Worker = Callable[[TrainJob], Awaitable[TrainResult]]


class Halt(Exception):
    """A step decided the run ends here, in `state`, for `reason`."""

    def __init__(self, state: retrainer_pb2.RunState.ValueType, reason: str) -> None:
        super().__init__(reason)
        self.state = state
        self.reason = reason


@dataclass
class Context:
    """What the steps hand each other."""

    policy: retrainer_pb2.TrainingPolicy
    champion: VersionRecord
    spec: VersionSpec
    target: str
    snapshot_id: str = ""
    window: tuple[dt.datetime, dt.datetime] | None = None
    seed: int = 0
    data: Snapshot | None = None
    result: TrainResult | None = None
    outputs: dict[str, Any] = field(default_factory=dict)


class Pipeline:
    def __init__(
        self,
        versions: Versions,
        artifacts: ArtifactStore,
        artifacts_root: Path,
        prediction_log: PredictionLog,
        runs: RunStore,
        rollouts: Rollouts,
        worker: Worker,
    ) -> None:
        self._versions = versions
        self._artifacts = artifacts
        self._artifacts_root = artifacts_root
        self._predictions = prediction_log
        self._runs = runs
        self._rollouts = rollouts
        self._worker = worker

    async def execute(
        self,
        run: retrainer_pb2.RetrainRun,
        policy: retrainer_pb2.TrainingPolicy,
        window: tuple[dt.datetime, dt.datetime] | None = None,
        snapshot_id: str = "",
    ) -> retrainer_pb2.RetrainRun:
        """Run every step, recording each; return the run in its final state."""
        run.state = retrainer_pb2.RUN_STATE_RUNNING
        await self._save(run)
        try:
            context = await self._context(run, policy, window, snapshot_id)
            await self._step(run, 0, "extract", self._extract, context)
            await self._step(run, 1, "validate", self._validate, context)
            await self._step(run, 2, "train", self._train, context)
            await self._step(run, 3, "evaluate", self._evaluate, context)
            await self._step(run, 4, "gate", self._gate, context)
            await self._step(run, 5, "register", self._register, context)
            await self._step(run, 6, "rollout", self._rollout, context)
            run.state = retrainer_pb2.RUN_STATE_SUCCEEDED
            run.outcome = f"v{run.new_version} registered; rollout {run.rollout_outcome}"
        except Halt as halt:
            run.state, run.outcome = halt.state, halt.reason
        except Exception as error:  # any failure ends the run, recorded
            run.state = retrainer_pb2.RUN_STATE_FAILED
            run.outcome = f"{type(error).__name__}: {error}"
            log.exception("retraining run %s of %s failed", run.run_id, run.model)
        await self._save(run)
        return run

    async def _save(self, run: retrainer_pb2.RetrainRun) -> None:
        run.updated.CopyFrom(stamp(dt.datetime.now(dt.UTC)))
        await self._runs.save_run(run)

    async def _step(
        self,
        run: retrainer_pb2.RetrainRun,
        ordinal: int,
        name: str,
        body: Callable[[retrainer_pb2.RetrainRun, Context], Awaitable[str]],
        context: Context,
    ) -> None:
        step = retrainer_pb2.RetrainStep(
            name=name,
            state=retrainer_pb2.STEP_STATE_RUNNING,
            started=stamp(dt.datetime.now(dt.UTC)),
            inputs_json=as_json(context.outputs),
        )
        run.steps.append(step)
        await self._runs.save_step(run, ordinal, step)
        context.outputs = {}
        started = time.monotonic()
        try:
            step.detail = await body(run, context)
            step.state = retrainer_pb2.STEP_STATE_SUCCEEDED
        except Halt as halt:
            step.state, step.detail = retrainer_pb2.STEP_STATE_FAILED, halt.reason
            raise
        except Exception as error:
            step.state = retrainer_pb2.STEP_STATE_FAILED
            step.detail = f"{type(error).__name__}: {error}"
            raise
        finally:
            context.outputs["seconds"] = round(time.monotonic() - started, 3)
            step.outputs_json = as_json(context.outputs)
            step.finished.CopyFrom(stamp(dt.datetime.now(dt.UTC)))
            await self._runs.save_step(run, ordinal, step)
            await self._save(run)

    async def _context(
        self,
        run: retrainer_pb2.RetrainRun,
        policy: retrainer_pb2.TrainingPolicy,
        window: tuple[dt.datetime, dt.datetime] | None,
        snapshot_id: str,
    ) -> Context:
        try:
            champion = await self._versions.get(run.model, CHAMPION)
        except DriftloopError as error:
            raise Halt(
                retrainer_pb2.RUN_STATE_FAILED,
                f"{run.model} has no champion to retrain ({error.message})",
            ) from None
        if champion.flavor not in FLAVORS_TRAINED:
            raise Halt(
                retrainer_pb2.RUN_STATE_FAILED,
                f"{run.model} v{champion.version} is of the {champion.flavor} flavor, which "
                f"driftloop cannot retrain (it retrains {', '.join(FLAVORS_TRAINED)})",
            )
        target = champion.hyperparameters.get("target", "") or "label"
        run.parent_version = champion.version
        spec = VersionSpec(
            model=champion.model,
            version=champion.version,
            flavor=champion.flavor,
            artifact_sha256=champion.artifact_sha256,
            schema=champion.schema,
            output_kind=champion.output_kind,
            entry_point=champion.entry_point,
        )
        return Context(
            policy=policy,
            champion=champion,
            spec=spec,
            target=target,
            snapshot_id=snapshot_id,
            window=window,
            seed=run.seed,
        )

    async def _extract(self, run: retrainer_pb2.RetrainRun, context: Context) -> str:
        schema = context.spec.schema
        if context.snapshot_id:
            data = await asyncio.to_thread(
                snapshots.load, context.snapshot_id, self._artifacts, schema
            )
            source = f"snapshot {context.snapshot_id[:12]}"
        else:
            data = await self._read_window(run, context)
            context.snapshot_id = await asyncio.to_thread(snapshots.store, data, self._artifacts)
            source = "the prediction log"
        if data.rows == 0:
            raise Halt(retrainer_pb2.RUN_STATE_REJECTED_DATA, "no labelled traffic in the window")
        context.data = data
        first = dt.datetime.fromtimestamp(float(data.time_us.min()) / 1e6, tz=dt.UTC)
        last = dt.datetime.fromtimestamp(float(data.time_us.max()) / 1e6, tz=dt.UTC)
        run.data_window.start.CopyFrom(stamp(first))
        run.data_window.end.CopyFrom(stamp(last + dt.timedelta(microseconds=1)))
        run.snapshot_id = context.snapshot_id
        run.training_rows = int((~data.holdout).sum())
        run.holdout_rows = int(data.holdout.sum())
        context.outputs = {
            "snapshot_id": context.snapshot_id,
            "rows": data.rows,
            "training_rows": run.training_rows,
            "holdout_rows": run.holdout_rows,
            "first": first.isoformat(),
            "last": last.isoformat(),
        }
        return (
            f"{data.rows:,} labelled rows from {source} ({first:%Y-%m-%d %H:%M:%S} to "
            f"{last:%Y-%m-%d %H:%M:%S}); the newest {run.holdout_rows:,} are the holdout"
        )

    async def _read_window(self, run: retrainer_pb2.RetrainRun, context: Context) -> Snapshot:
        training = context.policy.training
        if context.window is not None:
            start, end = context.window
        else:
            end = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
            start = end - dt.timedelta(seconds=training.window_s)
        schema = context.spec.schema
        numeric = [f.name for f in schema.features if f.kind == "number"]
        categorical = [f.name for f in schema.features if f.kind == "category"]
        columns = await self._predictions.labelled(
            run.model, numeric, categorical, start, end, training.max_rows
        )
        features: dict[str, Any] = {}
        for index, name in enumerate(numeric):
            features[name] = np.asarray(columns[f"n{index}"], dtype=np.float64)
        for index, name in enumerate(categorical):
            features[name] = np.asarray(columns[f"c{index}"], dtype=np.str_)
        regression = context.spec.output_kind == "regression"
        target = (
            np.asarray(columns["truth_value"], dtype=np.float64)
            if regression
            else np.asarray(columns["truth_label"], dtype=np.str_)
        )
        rows = len(columns["request_id"])
        return Snapshot(
            features=Table(features) if features else Table({}),
            target=target,
            request_ids=np.asarray(columns["request_id"], dtype=np.str_),
            time_us=np.asarray(columns["time_us"], dtype=np.float64),
            holdout=split_newest(rows, training.holdout_fraction) if rows else np.zeros(0, bool),
        )

    async def _validate(self, run: retrainer_pb2.RetrainRun, context: Context) -> str:
        assert context.data is not None
        data, spec = context.data, context.spec
        columns = dict(data.features.columns)
        columns[context.target] = data.target
        champion_baseline = context.champion.baseline
        baseline = baseline_from_proto(champion_baseline) if champion_baseline is not None else None
        report: DataReport = await asyncio.to_thread(
            validate_training_data,
            Table(columns),
            spec.schema,
            context.target,
            spec.output_kind,
            baseline,
            ValidationPolicy(min_rows=context.policy.training.min_rows),
            data.request_ids,
        )
        del run.data_checks[:]
        run.data_checks.extend(
            retrainer_pb2.DataCheck(
                name=check.name,
                feature=check.feature,
                passed=check.passed,
                severity=check.severity,
                observed=check.observed,
                threshold=check.threshold,
                message=check.message,
            )
            for check in report.checks
        )
        context.outputs = {
            "checks": len(report.checks),
            "failed": [f"{c.name}:{c.feature}" for c in report.failures],
            "warnings": [f"{c.name}:{c.feature}" for c in report.warnings],
        }
        if not report.passed:
            raise Halt(
                retrainer_pb2.RUN_STATE_REJECTED_DATA,
                "data validation failed: " + "; ".join(c.message for c in report.failures),
            )
        warned = f", {len(report.warnings)} warnings" if report.warnings else ""
        return f"{len(report.checks)} checks passed on {report.rows:,} rows{warned}"

    async def _train(self, run: retrainer_pb2.RetrainRun, context: Context) -> str:
        assert context.data is not None
        policy = context.policy.training
        job = TrainJob(
            snapshot=context.data,
            target=context.target,
            champion=context.spec,
            artifacts_root=self._artifacts_root,
            l2=policy.l2,
            seed=context.seed,
        )
        started = time.monotonic()
        result = await self._worker(job)
        context.result = result
        digest = await asyncio.to_thread(self._artifacts.put, result.artifact)
        run.artifact_sha256 = digest
        context.outputs = {
            "flavor": result.flavor,
            "artifact_sha256": digest,
            "training_rows": result.training_rows,
            "seed": context.seed,
            "l2": policy.l2,
        }
        how = "learnt online from" if result.flavor == "river" else "trained on"
        return (
            f"{result.flavor} challenger {how} {result.training_rows:,} rows in "
            f"{time.monotonic() - started:.1f} s (artifact {digest[:12]})"
        )

    async def _evaluate(self, run: retrainer_pb2.RetrainRun, context: Context) -> str:
        assert context.result is not None
        result = context.result
        context.outputs = {"challenger": result.metrics, "champion": result.champion_metrics}
        key = "mae" if context.spec.output_kind == "regression" else "accuracy"
        return (
            f"on {result.holdout_rows:,} holdout rows: {key} challenger "
            f"{result.metrics.get(key, float('nan')):.4f}, champion "
            f"v{context.champion.version} {result.champion_metrics.get(key, float('nan')):.4f}"
        )

    async def _gate(self, run: retrainer_pb2.RetrainRun, context: Context) -> str:
        assert context.result is not None and context.data is not None
        rules = context.policy.gate
        result, data = context.result, context.data
        holdout = data.holdout
        regression = context.spec.output_kind == "regression"
        segments = None
        if rules.segment_feature:
            column = data.features.columns.get(rules.segment_feature)
            if column is None or column.dtype.kind == "f":
                raise FailedPrecondition(
                    f"gate.segment_feature {rules.segment_feature} is not a categorical "
                    "feature of the model"
                )
            segments = column[holdout].astype(np.str_)
        verdict = await asyncio.to_thread(
            judge,
            regression,
            None if regression else data.target[holdout].astype(np.str_),
            data.target[holdout].astype(np.float64) if regression else None,
            result.champion,
            result.challenger,
            GateRules(
                margin=rules.margin,
                alpha=rules.alpha,
                secondary_tolerance=rules.secondary_tolerance,
                segment_tolerance=rules.segment_tolerance,
                segment_min_rows=rules.segment_min_rows,
                seed=context.seed,
            ),
            segments,
        )
        run.gate.CopyFrom(verdict_to_proto(verdict))
        context.outputs = {"passed": verdict.passed, "checks": len(verdict.checks)}
        primary = verdict.checks[0]
        if not verdict.passed:
            raise Halt(
                retrainer_pb2.RUN_STATE_REJECTED_CHALLENGER,
                "the challenger did not pass the gate: " + "; ".join(verdict.reasons),
            )
        return primary.detail

    async def _register(self, run: retrainer_pb2.RetrainRun, context: Context) -> str:
        assert context.result is not None
        existing = [
            v for v in await self._versions.versions(run.model) if v.tags.get(RUN_TAG) == run.run_id
        ]
        if existing:
            version = existing[0]
            how = "found (registered before a restart)"
        else:
            version = await self._versions.register(self._record(run, context), "retrainer")
            how = "registered"
        run.new_version = version.version
        current = await self._versions.current_alias(run.model, CHALLENGER)
        if current != version.version:
            await self._versions.set_alias(
                run.model,
                CHALLENGER,
                version.version,
                current,
                f"retraining run {run.run_id}",
                "retrainer",
            )
        context.outputs = {"version": version.version, "parent_version": run.parent_version}
        return f"v{version.version} {how} (parent v{run.parent_version}), alias challenger"

    def _record(self, run: retrainer_pb2.RetrainRun, context: Context) -> NewVersion:
        result = context.result
        assert result is not None
        training = context.policy.training
        primary = run.gate.checks[0] if run.gate.checks else retrainer_pb2.GateCheck()
        window = run.data_window  # the extract step set both ends
        return NewVersion(
            model=run.model,
            flavor=result.flavor,
            artifact_sha256=run.artifact_sha256,
            schema=result.schema,
            output_kind=context.spec.output_kind,
            metrics=dict(sorted(result.metrics.items())),
            hyperparameters={
                "target": context.target,
                "l2": repr(training.l2),
                "holdout_fraction": repr(training.holdout_fraction),
                "holdout": "newest slice of the window",
            },
            seed=context.seed,
            data=DataLineage(
                source=f"retraining run {run.run_id}: labelled live traffic of {run.model}",
                row_count=run.training_rows + run.holdout_rows,
                content_sha256=run.snapshot_id,
                window_start=window.start.ToDatetime(tzinfo=dt.UTC),
                window_end=window.end.ToDatetime(tzinfo=dt.UTC),
            ),
            code_version=code_version(),
            environment=environment(),
            created_by="retrainer",
            tags={
                RUN_TAG: run.run_id,
                "driftloop.trigger": TRIGGER_NAMES.get(run.trigger, "unspecified"),
                "driftloop.evidence": run.evidence[:256],
                "driftloop.snapshot_id": run.snapshot_id,
                "driftloop.gate": (
                    f"{primary.metric} {primary.effect:+.4f} "
                    f"[{primary.ci_low:+.4f}, {primary.ci_high:+.4f}] p {primary.p_value:.3g}"
                ),
            },
            parent_version=run.parent_version,
            baseline=baseline_to_proto(result.baseline),
        )

    async def _rollout(self, run: retrainer_pb2.RetrainRun, context: Context) -> str:
        plan = context.policy.rollout
        if plan.on_pass == retrainer_pb2.ROLLOUT_ON_PASS_NONE:
            run.rollout_outcome = "not requested"
            return "the policy asks for no rollout: the challenger alias is set"
        await self._rollouts.start(
            run.model,
            run.new_version,
            plan,
            f"retraining run {run.run_id} ({TRIGGER_NAMES.get(run.trigger, '')}): "
            f"{run.evidence[:200]}",
        )
        run.rollout_outcome = "requested"
        strategy = {
            retrainer_pb2.ROLLOUT_ON_PASS_CANARY: "canary",
            retrainer_pb2.ROLLOUT_ON_PASS_BLUE_GREEN: "blue-green",
            retrainer_pb2.ROLLOUT_ON_PASS_SHADOW_THEN_CANARY: "shadow first, then canary",
        }[plan.on_pass]
        steps = " -> ".join(f"{p}%" for p in plan.steps_percent) or "the gateway's default steps"
        context.outputs = {"strategy": strategy, "steps": list(plan.steps_percent)}
        return f"{strategy} of v{run.new_version} requested from the gateway ({steps})"


def verdict_to_proto(verdict: Verdict) -> retrainer_pb2.GateVerdict:
    return retrainer_pb2.GateVerdict(
        passed=verdict.passed,
        reasons=verdict.reasons,
        checks=[
            retrainer_pb2.GateCheck(
                name=check.name,
                segment=check.segment,
                passed=check.passed,
                metric=check.metric,
                test=check.test,
                champion=check.champion,
                challenger=check.challenger,
                effect=check.effect,
                ci_low=check.ci_low,
                ci_high=check.ci_high,
                p_value=check.p_value,
                rows=check.rows,
                detail=check.detail,
            )
            for check in verdict.checks
        ],
    )


class ProcessWorker:
    """Training jobs in one worker process, so a long fit never stalls the event loop.
    Spawned, not forked: the service has threads (gRPC, Kafka) a fork would copy mid-use.
    The process starts with the first job and stays for the next ones."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None

    async def __call__(self, job: TrainJob) -> TrainResult:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn")
            )
        return await asyncio.get_running_loop().run_in_executor(self._pool, train_and_score, job)

    async def close(self) -> None:
        if self._pool is not None:
            await asyncio.to_thread(self._pool.shutdown, True, cancel_futures=True)
            self._pool = None
