"""The retrainer's tables in ClickHouse: policies, decisions, runs and their steps.

Records are the API's messages (stored as base64 protobuf beside the columns Grafana
reads), so what is served is what was recorded. Every table is a ReplacingMergeTree keyed
by its natural key and read with FINAL: writing a run's new state replaces the old row.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

from driftloop.clickhouse.client import ClickHouse
from driftloop.kit.times import stamp
from driftloop.retrainer.triggers import TRIGGER_NAMES
from driftloop.v1 import retrainer_pb2

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
RUN_STATE_NAMES = {
    value: name.removeprefix("RUN_STATE_").lower() for name, value in retrainer_pb2.RunState.items()
}
STEP_STATE_NAMES = {
    value: name.removeprefix("STEP_STATE_").lower()
    for name, value in retrainer_pb2.StepState.items()
}
DECISION_COLUMNS = (
    "decision_id",
    "time",
    "model",
    "trigger",
    "triggered",
    "reason",
    "evidence",
    "run_id",
)
OPEN_STATES = (retrainer_pb2.RUN_STATE_PENDING, retrainer_pb2.RUN_STATE_RUNNING)


def _encode(message: Any) -> str:
    return base64.b64encode(message.SerializeToString()).decode()


class RunStore:
    def __init__(self, clickhouse: ClickHouse) -> None:
        self._ch = clickhouse

    # policies

    async def policy(self, model: str) -> retrainer_pb2.TrainingPolicy | None:
        result = await self._ch.query(
            f"SELECT record FROM {self._ch.table('retrain_policies')} FINAL "
            "WHERE model = {model:String} ORDER BY revision DESC LIMIT 1",
            {"model": model},
        )
        if not result.rows:
            return None
        return retrainer_pb2.TrainingPolicy.FromString(base64.b64decode(result.rows[0][0]))

    async def models_with_policy(self) -> list[str]:
        result = await self._ch.query(
            f"SELECT DISTINCT model FROM {self._ch.table('retrain_policies')} FINAL ORDER BY model"
        )
        return [str(row[0]) for row in result.rows]

    async def save_policy(self, policy: retrainer_pb2.TrainingPolicy) -> None:
        await self._ch.insert(
            "retrain_policies",
            ("model", "revision", "updated", "updated_by", "enabled", "record"),
            [
                (
                    policy.model,
                    policy.revision,
                    policy.updated.ToDatetime(tzinfo=dt.UTC),
                    policy.updated_by,
                    int(policy.enabled),
                    _encode(policy),
                )
            ],
        )

    # decisions

    async def record_decision(self, decision: retrainer_pb2.RetrainDecision) -> None:
        await self._ch.insert(
            "retrain_decisions",
            (
                "decision_id",
                "time",
                "model",
                "trigger",
                "triggered",
                "reason",
                "evidence",
                "run_id",
            ),
            [
                (
                    decision.decision_id,
                    decision.time.ToDatetime(tzinfo=dt.UTC),
                    decision.model,
                    TRIGGER_NAMES.get(decision.trigger, "unspecified"),
                    int(decision.triggered),
                    decision.reason,
                    decision.evidence,
                    decision.run_id,
                )
            ],
        )

    async def decision_exists(self, model: str, decision_id: str) -> bool:
        result = await self._ch.query(
            f"SELECT count() FROM {self._ch.table('retrain_decisions')} FINAL "
            "WHERE model = {model:String} AND decision_id = {id:String}",
            {"model": model, "id": decision_id},
        )
        return bool(result.scalar())

    async def decisions(self, model: str, limit: int) -> list[retrainer_pb2.RetrainDecision]:
        result = await self._ch.query(
            f"SELECT {', '.join(DECISION_COLUMNS)} FROM {self._ch.table('retrain_decisions')} "
            "FINAL WHERE model = {model:String} "
            "ORDER BY time DESC, decision_id LIMIT {limit:UInt32}",
            {"model": model, "limit": limit},
        )
        by_name = {name: value for value, name in TRIGGER_NAMES.items()}
        return [
            retrainer_pb2.RetrainDecision(
                decision_id=decision_id,
                time=stamp(time),
                model=model_name,
                trigger=by_name.get(trigger, retrainer_pb2.RETRAIN_TRIGGER_UNSPECIFIED),
                triggered=bool(triggered),
                reason=reason,
                evidence=evidence,
                run_id=run_id,
            )
            for decision_id, time, model_name, trigger, triggered, reason, evidence, run_id in (
                result.rows
            )
        ]

    async def last_schedule_slot(self, model: str) -> int:
        """The newest schedule slot a decision was recorded for (0: none)."""
        result = await self._ch.query(
            "SELECT max(toInt64OrZero(evidence)) "
            f"FROM {self._ch.table('retrain_decisions')} FINAL "
            "WHERE model = {model:String} AND trigger = 'schedule'",
            {"model": model},
        )
        return int(result.scalar() or 0)

    # runs

    async def save_run(self, run: retrainer_pb2.RetrainRun) -> None:
        record = retrainer_pb2.RetrainRun()
        record.CopyFrom(run)
        del record.steps[:]
        await self._ch.insert(
            "retrain_runs",
            (
                "run_id",
                "model",
                "trigger",
                "state",
                "created",
                "updated",
                "parent_version",
                "new_version",
                "snapshot_id",
                "window_end",
                "training_rows",
                "holdout_rows",
                "gate_passed",
                "rollout_outcome",
                "reason",
                "outcome",
                "record",
            ),
            [
                (
                    run.run_id,
                    run.model,
                    TRIGGER_NAMES.get(run.trigger, "unspecified"),
                    RUN_STATE_NAMES[run.state],
                    run.created.ToDatetime(tzinfo=dt.UTC),
                    run.updated.ToDatetime(tzinfo=dt.UTC),
                    run.parent_version,
                    run.new_version,
                    run.snapshot_id,
                    run.data_window.end.ToDatetime(tzinfo=dt.UTC)
                    if run.data_window.HasField("end")
                    else EPOCH,
                    run.training_rows,
                    run.holdout_rows,
                    int(run.gate.passed),
                    run.rollout_outcome,
                    run.reason,
                    run.outcome,
                    _encode(record),
                )
            ],
        )

    async def save_step(
        self, run: retrainer_pb2.RetrainRun, ordinal: int, step: retrainer_pb2.RetrainStep
    ) -> None:
        await self._ch.insert(
            "retrain_steps",
            (
                "run_id",
                "model",
                "ordinal",
                "step",
                "state",
                "started",
                "finished",
                "detail",
                "inputs",
                "outputs",
                "updated",
            ),
            [
                (
                    run.run_id,
                    run.model,
                    ordinal,
                    step.name,
                    STEP_STATE_NAMES[step.state],
                    step.started.ToDatetime(tzinfo=dt.UTC),
                    step.finished.ToDatetime(tzinfo=dt.UTC) if step.HasField("finished") else EPOCH,
                    step.detail,
                    step.inputs_json or "{}",
                    step.outputs_json or "{}",
                    dt.datetime.now(dt.UTC),
                )
            ],
        )

    async def run(self, run_id: str) -> retrainer_pb2.RetrainRun | None:
        result = await self._ch.query(
            f"SELECT record FROM {self._ch.table('retrain_runs')} FINAL "
            "WHERE run_id = {run_id:String}",
            {"run_id": run_id},
        )
        if not result.rows:
            return None
        run = retrainer_pb2.RetrainRun.FromString(base64.b64decode(result.rows[0][0]))
        run.steps.extend(await self.steps(run.model, run_id))
        return run

    async def steps(self, model: str, run_id: str) -> list[retrainer_pb2.RetrainStep]:
        result = await self._ch.query(
            "SELECT step, state, started, finished, detail, inputs, outputs "
            f"FROM {self._ch.table('retrain_steps')} FINAL "
            "WHERE model = {model:String} AND run_id = {run_id:String} ORDER BY ordinal",
            {"model": model, "run_id": run_id},
        )
        by_name = {name: value for value, name in STEP_STATE_NAMES.items()}
        steps = []
        for name, state, started, finished, detail, inputs, outputs in result.rows:
            step = retrainer_pb2.RetrainStep(
                name=name,
                state=by_name[state],
                started=stamp(started),
                detail=detail,
                inputs_json=inputs,
                outputs_json=outputs,
            )
            if finished > EPOCH:
                step.finished.CopyFrom(stamp(finished))
            steps.append(step)
        return steps

    async def runs(self, model: str, limit: int) -> list[retrainer_pb2.RetrainRun]:
        """A model's runs, newest first (without their steps)."""
        result = await self._ch.query(
            f"SELECT record FROM {self._ch.table('retrain_runs')} FINAL "
            "WHERE model = {model:String} ORDER BY created DESC LIMIT {limit:UInt32}",
            {"model": model, "limit": limit},
        )
        return [retrainer_pb2.RetrainRun.FromString(base64.b64decode(r[0])) for r in result.rows]

    async def open_runs(self) -> list[retrainer_pb2.RetrainRun]:
        """Runs left pending or running (by a process that stopped mid-run)."""
        states = ", ".join(f"'{RUN_STATE_NAMES[state]}'" for state in OPEN_STATES)
        result = await self._ch.query(
            f"SELECT record FROM {self._ch.table('retrain_runs')} FINAL WHERE state IN ({states})"
        )
        return [retrainer_pb2.RetrainRun.FromString(base64.b64decode(r[0])) for r in result.rows]

    async def last_window_end(self, model: str) -> dt.datetime | None:
        """Where the newest training window of any run ended (None: no run extracted yet)."""
        result = await self._ch.query(
            f"SELECT max(window_end) FROM {self._ch.table('retrain_runs')} FINAL "
            "WHERE model = {model:String}",
            {"model": model},
        )
        value = result.scalar()
        return value if isinstance(value, dt.datetime) and value > EPOCH else None

    async def last_started(self, model: str) -> dt.datetime | None:
        result = await self._ch.query(
            f"SELECT max(created) FROM {self._ch.table('retrain_runs')} FINAL "
            "WHERE model = {model:String}",
            {"model": model},
        )
        value = result.scalar()
        return value if isinstance(value, dt.datetime) and value > EPOCH else None

    async def rollout_in_progress(
        self, model: str, since: dt.datetime
    ) -> retrainer_pb2.RetrainRun | None:
        """The newest run since `since` whose requested rollout has no outcome yet."""
        result = await self._ch.query(
            f"SELECT record FROM {self._ch.table('retrain_runs')} FINAL "
            "WHERE model = {model:String} AND rollout_outcome = 'requested' "
            "AND created >= {since:DateTime64(6, 'UTC')} ORDER BY created DESC LIMIT 1",
            {"model": model, "since": since},
        )
        if not result.rows:
            return None
        return retrainer_pb2.RetrainRun.FromString(base64.b64decode(result.rows[0][0]))

    async def run_of_version(self, model: str, version: str) -> retrainer_pb2.RetrainRun | None:
        result = await self._ch.query(
            f"SELECT run_id FROM {self._ch.table('retrain_runs')} FINAL "
            "WHERE model = {model:String} AND new_version = {version:String} LIMIT 1",
            {"model": model, "version": version},
        )
        return await self.run(str(result.rows[0][0])) if result.rows else None


def as_json(values: dict[str, Any]) -> str:
    return json.dumps(values, sort_keys=True, default=str)
