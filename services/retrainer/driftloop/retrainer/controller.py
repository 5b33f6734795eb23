"""The retraining controller: hears the triggers, admits runs, runs them one per model.

Triggers come from four places: a periodic check (schedule, the champion's labelled
performance, new labelled data), the drift-alerts topic, and a person (TriggerRetrain).
Each is decided by the pure rules in triggers.py and recorded, run or skipped, with its
reason; a drift alert's decision is keyed by the alert id, so a re-delivered alert is
not acted on twice. An admitted run executes the pipeline in a task of its own; a trigger
that arrives while it runs is recorded as skipped, not lost. At start, a run a previous
process left open is closed as failed with the step it was in (never resumed blindly,
never left "running"). Model-events tell how a requested rollout ended; a run that ends
without a new version (failed, or halted by a gate) is announced there as RETRAIN_HALTED.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import uuid
from collections.abc import Awaitable, Callable, Sequence

import numpy as np

from driftloop.clickhouse.prediction_log import PredictionLog
from driftloop.kafka.consumer import Record
from driftloop.kit.errors import DriftloopError, FailedPrecondition, InvalidArgument, NotFound
from driftloop.kit.names import check_name
from driftloop.kit.times import stamp
from driftloop.retrainer import metrics
from driftloop.retrainer.pipeline import CHAMPION, Pipeline, Versions
from driftloop.retrainer.policy import default_policy, validate_policy
from driftloop.retrainer.registry import ModelEventSink, VersionRecord
from driftloop.retrainer.runs_store import RUN_STATE_NAMES, RunStore
from driftloop.retrainer.triggers import (
    DATA_VOLUME,
    DRIFT,
    MANUAL,
    PERFORMANCE,
    SCHEDULE,
    TRIGGER_NAMES,
    Decision,
    ModelActivity,
    Performance,
    Trigger,
    admit,
    asks_for_decision,
    drift_cause,
    new_data_cause,
    performance_breach,
    schedule_due,
    schedule_slot,
)
from driftloop.v1 import events_pb2, retrainer_pb2

log = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]
# A requested rollout whose outcome was never heard of stops blocking new runs after this.
ROLLOUT_WAIT = dt.timedelta(hours=1)
HALTED_STATES = (
    retrainer_pb2.RUN_STATE_FAILED,
    retrainer_pb2.RUN_STATE_REJECTED_DATA,
    retrainer_pb2.RUN_STATE_REJECTED_CHALLENGER,
)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Controller:
    def __init__(
        self,
        runs: RunStore,
        versions: Versions,
        models: Callable[[], Awaitable[list[str]]],
        prediction_log: PredictionLog,
        pipeline: Pipeline,
        events: ModelEventSink,
        clock: Clock = _now,
    ) -> None:
        self._runs = runs
        self._events = events
        self._versions = versions
        self._list_models = models
        self._predictions = prediction_log
        self._pipeline = pipeline
        self._clock = clock
        self._locks: dict[str, asyncio.Lock] = {}
        self._running: dict[str, str] = {}  # model -> run id
        self._tasks: dict[str, asyncio.Task[retrainer_pb2.RetrainRun]] = {}
        self._last_skip: dict[tuple[str, int], str] = {}

    # policies

    async def policy(self, model: str) -> retrainer_pb2.TrainingPolicy:
        check_name("model", model, "model name")
        return await self._runs.policy(model) or default_policy(model)

    async def set_policy(
        self, policy: retrainer_pb2.TrainingPolicy, expected_revision: int, actor: str
    ) -> retrainer_pb2.TrainingPolicy:
        validate_policy(policy)
        async with self._lock(policy.model):
            current = await self._runs.policy(policy.model)
            revision = current.revision if current else 0
            if expected_revision != revision:
                raise FailedPrecondition(
                    f"the training policy of {policy.model} is at revision {revision}, not "
                    f"{expected_revision}; read it again and retry"
                )
            new = retrainer_pb2.TrainingPolicy()
            new.CopyFrom(policy)
            new.revision = revision + 1
            new.updated.CopyFrom(stamp(self._clock()))
            new.updated_by = actor
            await self._runs.save_policy(new)
        log.info("training policy of %s at revision %d", new.model, new.revision)
        return new

    # triggers

    async def trigger_manual(
        self,
        model: str,
        reason: str,
        actor: str,
        window: tuple[dt.datetime, dt.datetime] | None = None,
        snapshot_id: str = "",
        seed: int | None = None,
    ) -> retrainer_pb2.RetrainRun:
        check_name("model", model, "model name")
        await self._champion_of(model)  # NOT_FOUND before anything is recorded
        cause = f"requested by {actor}" + (f": {reason}" if reason else "")
        decision, run = await self._consider(
            model,
            MANUAL,
            cause,
            evidence=snapshot_id or reason,
            window=window,
            snapshot_id=snapshot_id,
            seed=seed,
        )
        if run is None:
            raise FailedPrecondition(decision.reason)
        return run

    async def on_alerts(self, records: Sequence[Record]) -> None:
        """The drift-alerts consumer's batch handler (committed after it returns)."""
        for record in records:
            alert = record.value
            assert isinstance(alert, events_pb2.DriftAlert)
            if not asks_for_decision(alert):
                continue
            policy = await self.policy(alert.model)
            # An alert is decided on its open, and again on each update raising its severity.
            decision_id = f"drift:{alert.alert_id}" + (
                f":{alert.revision}" if alert.revision else ""
            )
            if await self._runs.decision_exists(alert.model, decision_id):
                continue  # a re-delivered alert: already decided
            try:
                champion = (await self._champion_of(alert.model)).version
            except NotFound:
                champion = ""
            cause = drift_cause(policy, alert, champion)
            if not cause:
                kind = events_pb2.DriftKind.Name(alert.kind).removeprefix("DRIFT_KIND_").lower()
                ignored = Decision(
                    False,
                    f"ignored: a {kind} alert on v{alert.version} (the champion is "
                    f"v{champion or 'none'}), not one the policy acts on",
                )
                await self._record(alert.model, DRIFT, ignored, alert.alert_id, decision_id)
                continue
            await self._consider(alert.model, DRIFT, cause, alert.alert_id, decision_id)

    async def check(self) -> None:
        """One round of the periodic triggers over every model with a champion."""
        for model in await self._list_models():
            try:
                await self._check_model(model)
            except DriftloopError as error:
                log.warning("checking the triggers of %s failed: %s", model, error.message)

    async def _check_model(self, model: str) -> None:
        try:
            champion = await self._champion_of(model)
        except NotFound:
            return
        policy = await self.policy(model)
        now = self._clock()
        due = schedule_due(policy, now, await self._runs.last_schedule_slot(model))
        if due:
            slot = schedule_slot(now, policy.schedule.every_s)
            await self._consider(model, SCHEDULE, due, str(slot), f"schedule:{slot}")
        regression = champion.output_kind == "regression"
        if policy.performance.enabled:
            performance = await self._performance(model, policy, regression, champion)
            cause = performance_breach(policy, regression, performance)
            if cause:
                await self._consider(model, PERFORMANCE, cause, f"{performance.observed:.6g}")
        if policy.new_data.min_new_labelled:
            # New since the last training snapshot: the champion's, or a later run's (a
            # refused run saw that data too; counting from the champion would re-run on it).
            since = champion.data.window_end or champion.created
            last_run = await self._runs.last_window_end(model)
            since = max(since, last_run) if last_run else since
            count = await self._predictions.labelled_count(model, since)
            cause = new_data_cause(policy, count)
            if cause:
                await self._consider(model, DATA_VOLUME, cause, str(count))

    async def _performance(
        self,
        model: str,
        policy: retrainer_pb2.TrainingPolicy,
        regression: bool,
        champion: VersionRecord,
    ) -> Performance:
        now = self._clock()
        columns = await self._predictions.labelled(
            model,
            (),
            (),
            now - dt.timedelta(seconds=policy.performance.window_s),
            now + dt.timedelta(seconds=1),
            1_000_000,
            champion.version,
        )
        metrics_of = champion.metrics
        labelled = len(columns["request_id"])
        if not labelled:
            return Performance(0, math.nan, math.nan)
        if regression:
            per_row = np.abs(columns["output_value"] - columns["truth_value"])
            holdout = metrics_of.get("mae", math.nan)
        else:
            right = columns["output_label"].astype(str) == columns["truth_label"].astype(str)
            per_row = right.astype(np.float64)
            holdout = metrics_of.get("accuracy", math.nan)
        return Performance(labelled, float(per_row.mean()), holdout, float(per_row.std()))

    async def _champion_of(self, model: str) -> VersionRecord:
        return await self._versions.get(model, CHAMPION)

    async def _consider(
        self,
        model: str,
        trigger: Trigger,
        cause: str,
        evidence: str,
        decision_id: str = "",
        window: tuple[dt.datetime, dt.datetime] | None = None,
        snapshot_id: str = "",
        seed: int | None = None,
    ) -> tuple[Decision, retrainer_pb2.RetrainRun | None]:
        """Admit or skip a trigger whose condition holds; record the decision."""
        async with self._lock(model):
            policy = await self.policy(model)
            now = self._clock()
            rolling = await self._runs.rollout_in_progress(model, now - ROLLOUT_WAIT)
            activity = ModelActivity(
                running_run=self._running.get(model, ""),
                last_started=await self._runs.last_started(model),
                rolling_out=f"v{rolling.new_version} (run {rolling.run_id})" if rolling else "",
            )
            decision = admit(policy, trigger, activity, now, cause)
            run = None
            if decision.triggered:
                run = self._new_run(model, trigger, cause, evidence, policy, seed)
                await self._runs.save_run(run)
                self._running[model] = run.run_id
                self._tasks[model] = asyncio.create_task(
                    self._execute(run, policy, window, snapshot_id), name=f"run {run.run_id}"
                )
            await self._record(model, trigger, decision, evidence, decision_id, run)
        return decision, run

    def _new_run(
        self,
        model: str,
        trigger: Trigger,
        cause: str,
        evidence: str,
        policy: retrainer_pb2.TrainingPolicy,
        seed: int | None,
    ) -> retrainer_pb2.RetrainRun:
        now = stamp(self._clock())
        return retrainer_pb2.RetrainRun(
            run_id=f"{model}-{uuid.uuid4().hex[:12]}",
            model=model,
            trigger=trigger,
            state=retrainer_pb2.RUN_STATE_PENDING,
            reason=cause,
            evidence=evidence,
            created=now,
            updated=now,
            seed=policy.training.seed if seed is None else seed,
        )

    async def _execute(
        self,
        run: retrainer_pb2.RetrainRun,
        policy: retrainer_pb2.TrainingPolicy,
        window: tuple[dt.datetime, dt.datetime] | None,
        snapshot_id: str,
    ) -> retrainer_pb2.RetrainRun:
        metrics.RUNS_RUNNING.labels(run.model).set(1)
        try:
            done = await self._pipeline.execute(run, policy, window, snapshot_id)
        finally:
            self._running.pop(run.model, None)
            self._tasks.pop(run.model, None)
            metrics.RUNS_RUNNING.labels(run.model).set(0)
        state = RUN_STATE_NAMES[done.state]
        metrics.RUNS.labels(run.model, state).inc()
        log.info(
            "retraining run %s of %s ended: %s",
            run.run_id,
            run.model,
            state,
            extra={"outcome": done.outcome, "new_version": done.new_version},
        )
        await self._announce_halt(done)
        return done

    async def _announce_halt(self, run: retrainer_pb2.RetrainRun) -> None:
        """RETRAIN_HALTED on model-events for a run that ended without a new version. The
        run is recorded either way; an announcement the broker refused is logged, not retried."""
        if run.state not in HALTED_STATES:
            return
        event = events_pb2.ModelEvent(
            kind=events_pb2.MODEL_EVENT_KIND_RETRAIN_HALTED,
            model=run.model,
            version=run.parent_version,
            reason=run.outcome[:1000],
            actor="retrainer",
            time=stamp(self._clock()),
            run_id=run.run_id,
            run_state=RUN_STATE_NAMES[run.state],
        )
        try:
            await self._events.publish(event)
        except DriftloopError as error:
            log.warning("retraining run %s of %s: %s", run.run_id, run.model, error)

    async def _record(
        self,
        model: str,
        trigger: Trigger,
        decision: Decision,
        evidence: str,
        decision_id: str = "",
        run: retrainer_pb2.RetrainRun | None = None,
    ) -> None:
        name = TRIGGER_NAMES.get(trigger, "unspecified")
        metrics.DECISIONS.labels(model, name, "run" if decision.triggered else "skipped").inc()
        periodic = trigger in (SCHEDULE, PERFORMANCE, DATA_VOLUME) and not decision.triggered
        if periodic and self._last_skip.get((model, trigger)) == _gist(decision.reason):
            return  # the same skip every round is recorded once, not every round
        self._last_skip[(model, trigger)] = _gist(decision.reason)
        await self._runs.record_decision(
            retrainer_pb2.RetrainDecision(
                decision_id=decision_id or f"{name}:{uuid.uuid4().hex}",
                model=model,
                trigger=trigger,
                triggered=decision.triggered,
                reason=decision.reason,
                evidence=evidence,
                run_id=run.run_id if run else "",
                time=stamp(self._clock()),
            )
        )
        log.info(
            "%s trigger of %s: %s",
            name,
            model,
            "run " + run.run_id if run else "skipped",
            extra={"reason": decision.reason},
        )

    # rollouts and restarts

    async def on_model_event(self, event: object) -> None:
        """A rollout of a retrained version ended: record how."""
        assert isinstance(event, events_pb2.ModelEvent)
        ended = (events_pb2.MODEL_EVENT_KIND_PROMOTED, events_pb2.MODEL_EVENT_KIND_ROLLED_BACK)
        if event.kind not in ended:
            return
        run = await self._runs.run_of_version(event.model, event.version)
        if run is None:
            return
        promoted = event.kind == events_pb2.MODEL_EVENT_KIND_PROMOTED
        run.rollout_outcome = "promoted" if promoted else f"rolled back: {event.reason}"[:500]
        del run.steps[:]
        run.updated.CopyFrom(stamp(self._clock()))
        await self._runs.save_run(run)
        metrics.ROLLOUT_OUTCOMES.labels(
            event.model, "promoted" if promoted else "rolled_back"
        ).inc()

    async def recover(self) -> int:
        """Close the runs a stopped process left open; return how many."""
        closed = 0
        for run in await self._runs.open_runs():
            if run.run_id in self._running.values():
                continue
            steps = await self._runs.steps(run.model, run.run_id)
            last = steps[-1].name if steps else "before its first step"
            run.state = retrainer_pb2.RUN_STATE_FAILED
            run.outcome = f"interrupted: the retrainer stopped during {last}; trigger a new run"
            run.updated.CopyFrom(stamp(self._clock()))
            await self._runs.save_run(run)
            for ordinal, step in enumerate(steps):
                if step.state == retrainer_pb2.STEP_STATE_RUNNING:
                    step.state = retrainer_pb2.STEP_STATE_FAILED
                    step.detail = "interrupted by a restart"
                    step.finished.CopyFrom(stamp(self._clock()))
                    await self._runs.save_step(run, ordinal, step)
            closed += 1
            log.warning("closed run %s of %s: %s", run.run_id, run.model, run.reason)
            await self._announce_halt(run)
        return closed

    async def wait_idle(self) -> None:
        """Until no run is in progress (tests and a graceful stop)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    async def cancel_runs(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    def _lock(self, model: str) -> asyncio.Lock:
        return self._locks.setdefault(model, asyncio.Lock())


def _gist(reason: str) -> str:
    """A skip reason without its changing numbers (one record per kind of skip)."""
    return "".join(ch for ch in reason if not ch.isdigit())


def parse_window(
    start: dt.datetime | None, end: dt.datetime | None
) -> tuple[dt.datetime, dt.datetime] | None:
    if start is None and end is None:
        return None
    if start is None or end is None or start >= end:
        raise InvalidArgument("data_window", "give both start and end, start before end")
    return start, end
