"""`DriftloopClient`: the registry, inference, gateway, drift and retrainer APIs from Python
(asyncio).

    async with DriftloopClient.from_env() as client:
        version = await client.register_from_data("churn", Path("train.csv"), target="churned")
        await client.set_alias("churn", "champion", version.version)
        output = await client.serve("churn", {"age": 41.0, "plan": "pro"}, request_id="r-1")
        await client.publish_label("r-1", "yes")

(`driftloop.client.Client` is the same API without asyncio.)

Admin calls send DRIFTLOOP_ADMIN_TOKEN. A refused call raises the error class of its status
(driftloop.client.errors: NotFound, InvalidArgument with the field the server named,
Unavailable naming the service, its address and the variable that sets it, ...); each is a
grpc.aio.AioRpcError too, with the server's code and message.

Retries: a call that is safe to repeat is retried when the service answers UNAVAILABLE
(down, restarting, not yet listening), `retries` times (DRIFTLOOP_RETRIES), each attempt
within the call's own deadline, after a random wait in a doubling window (0 to 0.2 s, 0.4 s,
0.8 s ..., at most 5 s: exponential backoff with full jitter, driftloop.kit.grpc_client).
Safe to repeat: every read (Get*, List*, ResolveAlias, AnalyzeCanary, the shadow reports),
inference's Predict and PredictBatch (they change nothing), and the gateway's Predict when
the caller gives a request_id (the prediction is logged under that natural key, so a repeat
is a duplicate the drift service drops; without one the gateway draws a new id per attempt,
and a retry would count the request twice). Never retried: registrations, uploads, alias and
policy writes (a compare-and-set whose first attempt landed would fail as
FAILED_PRECONDITION), rollouts, triggers and the gateway's PredictBatch.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Annotated, Any

import grpc
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from driftloop.client.errors import typed
from driftloop.client.registry import RegistryClient
from driftloop.kit.grpc_client import (
    ACTOR_HEADER,
    admin_metadata,
    open_channel,
    retried_when_unavailable,
)
from driftloop.kit.settings import ConfigError, KafkaSettings, load_settings
from driftloop.models.convert import row_to_proto
from driftloop.models.registration import artifact_registration, version_record
from driftloop.models.schema import OutputKind, Row, Schema
from driftloop.models.table import read_table
from driftloop.models.training import Task, TrainedModel, TrainingSpec, train_linear
from driftloop.v1 import (
    common_pb2,
    drift_pb2,
    drift_pb2_grpc,
    events_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    inference_pb2,
    inference_pb2_grpc,
    registry_pb2,
    retrainer_pb2,
    retrainer_pb2_grpc,
    shadow_pb2,
    shadow_pb2_grpc,
)

if TYPE_CHECKING:
    from driftloop.kafka.producer import EventProducer

# A retraining run in one of these states has not ended yet.
RUN_IN_PROGRESS = (retrainer_pb2.RUN_STATE_PENDING, retrainer_pb2.RUN_STATE_RUNNING)


class ClientSettings(BaseSettings):
    """Where the services are (DRIFTLOOP_REGISTRY_TARGET, ...), and the admin token."""

    model_config = SettingsConfigDict(
        env_prefix="DRIFTLOOP_", extra="ignore", populate_by_name=True
    )

    registry_target: str = Field(
        default="127.0.0.1:50055",
        description="where the client and CLI find the registry (and the retrainer, on the "
        "same port)",
    )
    inference_target: str = Field(default="127.0.0.1:50052", description="where inference is")
    gateway_target: str = Field(default="127.0.0.1:50051", description="where the gateway is")
    drift_target: str = Field(default="127.0.0.1:50053", description="where the drift service is")
    shadow_target: str = Field(default="127.0.0.1:50054", description="where the shadow service is")
    admin_token: SecretStr | None = Field(
        default=None, description="the token sent with admin calls"
    )
    tls_ca_file: Path | None = Field(
        default=None,
        description="CA of the services' TLS certificates",
        json_schema_extra={"default_text": "unset: plaintext"},
    )
    actor: str = Field(
        default="",
        description="who is acting, recorded with registrations and alias moves",
        json_schema_extra={"default_text": "empty: `admin`"},
    )
    timeout_s: Annotated[float, Field(gt=0)] = Field(
        default=30.0, description="deadline of each call"
    )
    retries: Annotated[int, Field(ge=0, le=10)] = Field(
        default=3,
        description="how often the client and CLI retry a call that is safe to repeat when "
        "the service is unavailable (after random waits of up to 0.2, 0.4, 0.8 s ...: "
        "exponential backoff with jitter)",
    )


class DriftloopClient:
    """Every driftloop API from asyncio: one channel per service, opened at construction
    (connecting lazily), closed by `close()` or `async with`. `kafka` is only needed by
    `publish_label` (from_env reads it from DRIFTLOOP_KAFKA_*)."""

    def __init__(self, settings: ClientSettings, kafka: KafkaSettings | None = None) -> None:
        self._settings = settings
        self._kafka = kafka
        self._producer: EventProducer | None = None
        self._targets = {
            "registry": settings.registry_target,
            "retrainer": settings.registry_target,
            "inference": settings.inference_target,
            "gateway": settings.gateway_target,
            "drift": settings.drift_target,
            "shadow": settings.shadow_target,
        }
        self._registry_channel = open_channel(
            settings.registry_target, tls_ca_file=settings.tls_ca_file
        )
        self._inference_channel = open_channel(
            settings.inference_target, tls_ca_file=settings.tls_ca_file
        )
        self._gateway_channel = open_channel(
            settings.gateway_target, tls_ca_file=settings.tls_ca_file
        )
        self._registry = RegistryClient(self._registry_channel, self._registry_call)
        self.registry = self._registry.stub
        # The retrainer serves continuous training on the registry's port.
        self.retrainer = retrainer_pb2_grpc.RetrainerStub(self._registry_channel)
        self.inference = inference_pb2_grpc.InferenceServiceStub(self._inference_channel)
        self._drift_channel = open_channel(settings.drift_target, tls_ca_file=settings.tls_ca_file)
        self.gateway = gateway_pb2_grpc.GatewayStub(self._gateway_channel)
        self.drift = drift_pb2_grpc.DriftServiceStub(self._drift_channel)
        self._shadow_channel = open_channel(
            settings.shadow_target, tls_ca_file=settings.tls_ca_file
        )
        self.shadow = shadow_pb2_grpc.ShadowServiceStub(self._shadow_channel)
        self._timeout = settings.timeout_s

    async def __aenter__(self) -> DriftloopClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @classmethod
    def from_env(cls) -> DriftloopClient:
        """A client configured as the CLI is: ClientSettings (DRIFTLOOP_REGISTRY_TARGET,
        DRIFTLOOP_GATEWAY_TARGET, DRIFTLOOP_ADMIN_TOKEN ...) and KafkaSettings
        (DRIFTLOOP_KAFKA_*, for publish_label) from the environment; a bad variable raises
        ConfigError naming it."""
        return cls(load_settings(ClientSettings), load_settings(KafkaSettings))

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
        await self._registry_channel.close()
        await self._inference_channel.close()
        await self._gateway_channel.close()
        await self._drift_channel.close()
        await self._shadow_channel.close()

    def _admin(self) -> tuple[tuple[str, str], ...]:
        token = self._settings.admin_token
        if token is None:
            return ((ACTOR_HEADER, self._settings.actor),) if self._settings.actor else ()
        return admin_metadata(token.get_secret_value(), actor=self._settings.actor)

    async def _call(
        self,
        service: str,
        method: Any,
        request: Any,
        *,
        retry: bool,
        admin: bool = False,
        deadline_s: float | None = None,
    ) -> Any:
        """Call `method` of `service` with the deadline and (for admin calls) the token;
        retry=True repeats it on UNAVAILABLE (see the module docstring). A failure raises
        the typed error (driftloop.client.errors) of its status."""
        timeout = self._timeout if deadline_s is None else deadline_s
        metadata = self._admin() if admin else None

        async def attempt() -> Any:
            return await method(request, timeout=timeout, metadata=metadata)

        try:
            return await retried_when_unavailable(attempt, self._settings.retries if retry else 0)
        except grpc.aio.AioRpcError as error:
            raise typed(error, service, self._targets[service]) from None

    async def _registry_call(
        self, method: Any, request: Any, *, retry: bool, admin: bool, what: str
    ) -> Any:
        """The registry client's calls, made as every call of this client is."""
        return await self._call("registry", method, request, retry=retry, admin=admin)

    async def publish_label(
        self,
        request_id: str,
        label: str | float,
        *,
        source: str = "",
        time: dt.datetime | None = None,
    ) -> None:
        """Publish the true outcome of a served prediction to the labels topic, as the drift
        service reads it: keyed by request_id (the same partition as the prediction, for
        the co-partitioned join), a LabelEvent in binary protobuf; returns once the broker
        acknowledged it. label: a class (str) for classification, a number for regression.
        Publishing the same label again is harmless (request_id is its natural key)."""
        if self._kafka is None or not self._kafka.bootstrap_servers:
            raise ConfigError(
                "publish_label needs Kafka: set DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS "
                "(DriftloopClient.from_env() reads it)"
            )
        event = events_pb2.LabelEvent(request_id=request_id, source=source)
        if isinstance(label, str):
            event.label = label
        else:
            event.value = float(label)
        event.time.FromDatetime(time or dt.datetime.now(dt.UTC))
        # Kafka is imported on the first label: most clients never publish one.
        from driftloop.kafka.producer import EventProducer
        from driftloop.kafka.topics import TopicNames

        if self._producer is None:
            producer = EventProducer(self._kafka, self._kafka.bootstrap_servers)
            try:
                await producer.start()
            except BaseException:
                await producer.stop()
                raise
            self._producer = producer
        await self._producer.publish(TopicNames(self._kafka.topic_prefix).labels, request_id, event)

    async def upload_artifact(self, data: bytes) -> str:
        return await self._registry.upload_artifact(data)

    async def register(self, record: registry_pb2.ModelVersion) -> registry_pb2.ModelVersion:
        return await self._registry.register(record)

    async def register_trained(
        self,
        model: str,
        trained: TrainedModel,
        *,
        source: str,
        parent_version: str = "",
        tags: Mapping[str, str] | None = None,
    ) -> registry_pb2.ModelVersion:
        digest = await self.upload_artifact(trained.artifact)
        return await self.register(
            version_record(
                trained,
                model=model,
                artifact_sha256=digest,
                source=source,
                created_by=self._settings.actor,
                parent_version=parent_version,
                tags=tags,
            )
        )

    async def register_from_data(
        self,
        model: str,
        data: Path,
        *,
        target: str,
        task: Task = "auto",
        seed: int = 0,
        l2: float = 1.0,
        holdout_fraction: float = 0.2,
        parent_version: str = "",
        tags: Mapping[str, str] | None = None,
    ) -> registry_pb2.ModelVersion:
        """Train the built-in linear model on a CSV or Parquet file and register it."""
        spec = TrainingSpec(
            target=target, task=task, l2=l2, seed=seed, holdout_fraction=holdout_fraction
        )
        trained = await asyncio.to_thread(lambda: train_linear(read_table(data), spec))
        source = await asyncio.to_thread(lambda: str(data.resolve()))
        return await self.register_trained(
            model, trained, source=source, parent_version=parent_version, tags=tags
        )

    async def register_artifact(
        self,
        model: str,
        artifact: Path,
        *,
        flavor: str | None = None,
        schema: Schema | None = None,
        output_kind: OutputKind | None = None,
        reference_data: Path | None = None,
        holdout: Path | None = None,
        target: str | None = None,
        trust_pickle: bool = False,
        entry_point: str = "",
        parent_version: str = "",
        tags: Mapping[str, str] | None = None,
    ) -> registry_pb2.ModelVersion:
        """Register a model trained elsewhere: a scikit-learn file (skops; a pickle or
        joblib file only with trust_pickle), an ONNX file, an MLflow model directory of
        either, a river pickle or a python-flavor file. It is loaded here first; with
        reference data (CSV or Parquet) its drift baseline, and with a holdout (and the
        target column) its holdout metrics, are computed and registered with it."""
        data, record = await asyncio.to_thread(
            lambda: artifact_registration(
                artifact,
                model=model,
                flavor=flavor,
                schema=schema,
                output_kind=output_kind,
                reference_data=reference_data,
                holdout=holdout,
                target=target,
                trust_pickle=trust_pickle,
                entry_point=entry_point,
                created_by=self._settings.actor,
                parent_version=parent_version,
                tags=tags,
            )
        )
        record.artifact_sha256 = await self.upload_artifact(data)
        return await self.register(record)

    async def get_version(self, model: str, version: str) -> registry_pb2.ModelVersion:
        return await self._registry.get(model, version)

    async def list_versions(self, model: str) -> list[registry_pb2.ModelVersion]:
        return await self._registry.versions(model)

    async def lineage(self, model: str, version: str) -> list[registry_pb2.ModelVersion]:
        return await self._registry.lineage(model, version)

    async def set_alias(
        self,
        model: str,
        alias: str,
        version: str,
        *,
        expected_version: str | None = None,
        reason: str = "",
    ) -> registry_pb2.AliasMove:
        """Move an alias. expected_version=None reads the current target first (no CAS race
        protection beyond that read); pass it to make the move conditional."""
        if expected_version is None:
            history = await self.alias_history(model, alias)
            expected_version = history[-1].version if history else ""
        return await self._registry.set_alias(model, alias, version, expected_version, reason)

    async def alias_history(self, model: str, alias: str = "") -> list[registry_pb2.AliasMove]:
        return await self._registry.alias_history(model, alias)

    async def resolve_alias(
        self, model: str, alias: str, at: dt.datetime | None = None
    ) -> registry_pb2.ModelVersion:
        return await self._registry.resolve_alias(model, alias, at)

    async def predict(
        self, model: str, version: str, row: Row, request_id: str = ""
    ) -> inference_pb2.InferenceResponse:
        response: inference_pb2.InferenceResponse = await self._call(
            "inference",
            self.inference.Predict,
            inference_pb2.InferenceRequest(
                model=common_pb2.ModelRef(model=model, version=version),
                request_id=request_id,
                row=row_to_proto(row),
            ),
            retry=True,
        )
        return response

    async def predict_batch(
        self, model: str, version: str, rows: Sequence[Row]
    ) -> inference_pb2.InferenceBatchResponse:
        response: inference_pb2.InferenceBatchResponse = await self._call(
            "inference",
            self.inference.PredictBatch,
            inference_pb2.InferenceBatchRequest(
                model=common_pb2.ModelRef(model=model, version=version),
                rows=[row_to_proto(r) for r in rows],
            ),
            retry=True,
        )
        return response

    # The gateway: what applications call, and rollouts.

    async def serve(
        self, model: str, row: Row, *, entity_key: str = "", request_id: str = ""
    ) -> gateway_pb2.PredictResponse:
        """A prediction through the gateway (routed, logged)."""
        response: gateway_pb2.PredictResponse = await self._call(
            "gateway",
            self.gateway.Predict,
            gateway_pb2.PredictRequest(
                model=model, entity_key=entity_key, request_id=request_id, row=row_to_proto(row)
            ),
            retry=bool(request_id),
        )
        return response

    async def serve_batch(
        self, model: str, rows: Sequence[Row], entity_keys: Sequence[str] = ()
    ) -> list[gateway_pb2.PredictResponse]:
        keys = list(entity_keys) or [""] * len(rows)
        batch = await self._call(
            "gateway",
            self.gateway.PredictBatch,
            gateway_pb2.PredictBatchRequest(
                model=model,
                requests=[
                    gateway_pb2.PredictRequest(entity_key=k, row=row_to_proto(r))
                    for k, r in zip(keys, rows, strict=True)
                ],
            ),
            retry=False,
        )
        return list(batch.responses)

    async def routing_policy(self, model: str) -> events_pb2.RoutingPolicy:
        policy: events_pb2.RoutingPolicy = await self._call(
            "gateway",
            self.gateway.GetRoutingPolicy,
            gateway_pb2.GetRoutingPolicyRequest(model=model),
            retry=True,
        )
        return policy

    async def set_routing_policy(
        self, policy: events_pb2.RoutingPolicy, expected_revision: int
    ) -> events_pb2.RoutingPolicy:
        result: events_pb2.RoutingPolicy = await self._call(
            "gateway",
            self.gateway.SetRoutingPolicy,
            gateway_pb2.SetRoutingPolicyRequest(policy=policy, expected_revision=expected_revision),
            retry=False,
            admin=True,
        )
        return result

    async def start_rollout(
        self,
        model: str,
        candidate: str,
        strategy: str,
        *,
        hold_s: int = 0,
        reason: str = "",
        steps_percent: Sequence[float] = (),
        min_requests: int = 0,
        min_duration_s: int = 0,
        shadow_min_compared: int = 0,
        shadow_min_labelled: int = 0,
    ) -> events_pb2.RoutingPolicy:
        """strategy: "canary" or "blue-green". Canary steps default to the gateway's plan.
        With shadow_min_compared, a canary starts shadow first: the candidate is mirrored
        until that many requests (shadow_min_labelled of them labelled) were compared."""
        kind = {
            "canary": gateway_pb2.ROLLOUT_STRATEGY_CANARY,
            "blue-green": gateway_pb2.ROLLOUT_STRATEGY_BLUE_GREEN,
        }[strategy]
        steps = [
            events_pb2.CanaryStep(
                weight_bp=round(p * 100), min_requests=min_requests, min_duration_s=min_duration_s
            )
            for p in steps_percent
        ]
        policy: events_pb2.RoutingPolicy = await self._call(
            "gateway",
            self.gateway.StartRollout,
            gateway_pb2.StartRolloutRequest(
                model=model,
                candidate_version=candidate,
                strategy=kind,
                hold_s=hold_s,
                reason=reason,
                steps=steps,
                shadow_first=gateway_pb2.ShadowFirst(
                    min_compared=shadow_min_compared, min_labelled=shadow_min_labelled
                ),
            ),
            retry=False,
            admin=True,
            deadline_s=max(self._timeout, 60.0),
        )
        return policy

    async def promote(self, model: str, reason: str = "") -> events_pb2.RoutingPolicy:
        policy: events_pb2.RoutingPolicy = await self._call(
            "gateway",
            self.gateway.Promote,
            gateway_pb2.PromoteRequest(model=model, reason=reason),
            retry=False,
            admin=True,
        )
        return policy

    async def rollback(self, model: str, reason: str = "") -> events_pb2.RoutingPolicy:
        policy: events_pb2.RoutingPolicy = await self._call(
            "gateway",
            self.gateway.Rollback,
            gateway_pb2.RollbackRequest(model=model, reason=reason),
            retry=False,
            admin=True,
        )
        return policy

    async def drift_report(
        self,
        model: str,
        version: str,
        last_n: int = 0,
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
    ) -> drift_pb2.DriftReport:
        """A version's drift report over its last N predictions, or [start, end), or the
        service's default window when neither is given."""
        request = drift_pb2.DriftReportRequest(
            model=common_pb2.ModelRef(model=model, version=version)
        )
        if last_n:
            request.last_n = last_n
        elif start is not None and end is not None:
            request.time_window.start.FromDatetime(start)
            request.time_window.end.FromDatetime(end)
        report: drift_pb2.DriftReport = await self._call(
            "drift", self.drift.GetDriftReport, request, retry=True
        )
        return report

    async def drift_alerts(
        self,
        model: str,
        limit: int = 100,
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
    ) -> list[events_pb2.DriftAlert]:
        """A model's alerts, newest first (those raised in [start, end) when given)."""
        request = drift_pb2.ListAlertsRequest(model=model, limit=limit)
        if start is not None:
            request.window.start.FromDatetime(start)
        if end is not None:
            request.window.end.FromDatetime(end)
        response = await self._call("drift", self.drift.ListAlerts, request, retry=True)
        return list(response.alerts)

    async def model_history(
        self, model: str, start: dt.datetime, end: dt.datetime, bucket_s: int = 0
    ) -> drift_pb2.ModelHistory:
        """A model's time series over [start, end): live traffic per version, PSI per
        stream, labelled quality and label coverage, in buckets (0: the service chooses)."""
        request = drift_pb2.ModelHistoryRequest(model=model, bucket_s=bucket_s)
        request.window.start.FromDatetime(start)
        request.window.end.FromDatetime(end)
        history: drift_pb2.ModelHistory = await self._call(
            "drift", self.drift.GetModelHistory, request, retry=True
        )
        return history

    async def baseline(self, model: str, version: str) -> registry_pb2.Baseline:
        baseline: registry_pb2.Baseline = await self._call(
            "drift",
            self.drift.GetBaseline,
            drift_pb2.GetBaselineRequest(model=common_pb2.ModelRef(model=model, version=version)),
            retry=True,
        )
        return baseline

    async def analyze_canary(
        self, model: str, stable: str, candidate: str, since: dt.datetime | None = None
    ) -> drift_pb2.CanaryAnalysis:
        request = drift_pb2.CanaryAnalysisRequest(
            model=model, stable_version=stable, candidate_version=candidate
        )
        if since is not None:
            request.window.start.FromDatetime(since)
            request.window.end.FromDatetime(dt.datetime.now(dt.UTC))
        analysis: drift_pb2.CanaryAnalysis = await self._call(
            "drift", self.drift.AnalyzeCanary, request, retry=True
        )
        return analysis

    # The retrainer: continuous training runs and the training policy of each model.

    async def trigger_retrain(
        self,
        model: str,
        reason: str = "",
        snapshot_id: str = "",
        seed: int = 0,
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
    ) -> retrainer_pb2.RetrainRun:
        """Start a run now; it comes back PENDING (follow it with `wait_for_run`). start and
        end: train on [start, end) instead of the policy's window; snapshot_id (and seed):
        train on a stored snapshot again (a reproduction)."""
        request = retrainer_pb2.TriggerRetrainRequest(
            model=model, reason=reason, snapshot_id=snapshot_id, seed=seed
        )
        if start is not None:
            request.data_window.start.FromDatetime(start)
        if end is not None:
            request.data_window.end.FromDatetime(end)
        run: retrainer_pb2.RetrainRun = await self._call(
            "retrainer", self.retrainer.TriggerRetrain, request, retry=False, admin=True
        )
        return run

    async def retrain_run(self, run_id: str) -> retrainer_pb2.RetrainRun:
        run: retrainer_pb2.RetrainRun = await self._call(
            "retrainer",
            self.retrainer.GetRetrainRun,
            retrainer_pb2.GetRetrainRunRequest(run_id=run_id),
            retry=True,
        )
        return run

    async def retrain_runs(self, model: str, limit: int = 20) -> list[retrainer_pb2.RetrainRun]:
        """A model's runs, newest first."""
        response = await self._call(
            "retrainer",
            self.retrainer.ListRetrainRuns,
            retrainer_pb2.ListRetrainRunsRequest(model=model, limit=limit),
            retry=True,
        )
        return list(response.runs)

    async def retrain_decisions(
        self, model: str, limit: int = 50
    ) -> list[retrainer_pb2.RetrainDecision]:
        """Every trigger the retrainer considered for a model (run, or skipped and why)."""
        response = await self._call(
            "retrainer",
            self.retrainer.ListRetrainDecisions,
            retrainer_pb2.ListRetrainDecisionsRequest(model=model, limit=limit),
            retry=True,
        )
        return list(response.decisions)

    async def training_policy(self, model: str) -> retrainer_pb2.TrainingPolicy:
        """The policy in force (the defaults, at revision 0, when none was written)."""
        policy: retrainer_pb2.TrainingPolicy = await self._call(
            "retrainer",
            self.retrainer.GetTrainingPolicy,
            retrainer_pb2.GetTrainingPolicyRequest(model=model),
            retry=True,
        )
        return policy

    async def set_training_policy(
        self, policy: retrainer_pb2.TrainingPolicy, expected_revision: int
    ) -> retrainer_pb2.TrainingPolicy:
        """Replace the policy if it is still at expected_revision (else FAILED_PRECONDITION)."""
        written: retrainer_pb2.TrainingPolicy = await self._call(
            "retrainer",
            self.retrainer.SetTrainingPolicy,
            retrainer_pb2.SetTrainingPolicyRequest(
                policy=policy, expected_revision=expected_revision
            ),
            retry=False,
            admin=True,
        )
        return written

    async def wait_for_run(
        self,
        run_id: str,
        timeout_s: float,
        poll_s: float = 0.5,
        *,
        on_update: Callable[[retrainer_pb2.RetrainRun], None] | None = None,
    ) -> retrainer_pb2.RetrainRun:
        """Poll a run until it has ended (not PENDING or RUNNING) and return it; on_update sees
        every polled state. Raises TimeoutError when it has not ended after timeout_s."""
        deadline = time.monotonic() + timeout_s
        while True:
            run = await self.retrain_run(run_id)
            if on_update is not None:
                on_update(run)
            if run.state not in RUN_IN_PROGRESS:
                return run
            left = deadline - time.monotonic()
            if left <= 0:
                state = retrainer_pb2.RunState.Name(run.state).removeprefix("RUN_STATE_").lower()
                raise TimeoutError(f"run {run_id} is still {state} after {timeout_s:g} s")
            await asyncio.sleep(min(poll_s, left))

    async def shadow_comparison(
        self,
        model: str,
        shadow_version: str,
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
    ) -> shadow_pb2.ShadowComparison:
        """A shadow version against live on the same requests (default: the last hour)."""
        request = shadow_pb2.ShadowComparisonRequest(model=model, shadow_version=shadow_version)
        if start is not None:
            request.window.start.FromDatetime(start)
        if end is not None:
            request.window.end.FromDatetime(end)
        comparison: shadow_pb2.ShadowComparison = await self._call(
            "shadow", self.shadow.GetShadowComparison, request, retry=True
        )
        return comparison

    async def ab_report(
        self,
        model: str,
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
        min_effect: float = 0.0,
        control: str = "",
    ) -> shadow_pb2.ABReport:
        """Every A/B variant of a model over a window against the control."""
        request = shadow_pb2.ABReportRequest(model=model, min_effect=min_effect, control=control)
        if start is not None:
            request.window.start.FromDatetime(start)
        if end is not None:
            request.window.end.FromDatetime(end)
        report: shadow_pb2.ABReport = await self._call(
            "shadow", self.shadow.GetABReport, request, retry=True
        )
        return report

    async def shadow_status(self) -> shadow_pb2.ShadowStatus:
        status: shadow_pb2.ShadowStatus = await self._call(
            "shadow", self.shadow.GetShadowStatus, shadow_pb2.ShadowStatusRequest(), retry=True
        )
        return status
