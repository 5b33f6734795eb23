"""The gateway with the registry and inference, against the real broker and ClickHouse."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import grpc
import pytest

from driftloop.gateway import routing
from driftloop.gateway.rollouts import NO_QUALITY
from driftloop.kafka.local_broker import LocalBroker, find_kafka_libs
from driftloop.kafka.topics import TopicNames, ensure_topics
from driftloop.v1 import common_pb2, events_pb2, gateway_pb2, registry_pb2
from tests.conftest import REPO
from tests.integration.stack import (
    ADMIN,
    ROW,
    Stack,
    predict,
    read_topic,
    set_policy,
    until,
)


async def test_ab_routing_is_sticky_and_every_prediction_is_logged(stack: Stack) -> None:
    v1, v2 = await stack.register_linear(1), await stack.register_linear(2)
    gateway = await stack.gateway()
    await set_policy(
        gateway,
        events_pb2.RoutingPolicy(
            model="churn",
            stable_version=v1,
            salt="exp-1",
            variants=[
                events_pb2.Variant(name="a", version=v1, weight_bp=7000),
                events_pb2.Variant(name="b", version=v2, weight_bp=3000),
            ],
        ),
    )
    batch = gateway_pb2.PredictBatchRequest(
        model="churn",
        requests=[
            gateway_pb2.PredictRequest(entity_key=f"user-{n % 200}", row=ROW) for n in range(1000)
        ],
    )
    responses = (await gateway.PredictBatch(batch, timeout=30)).responses
    by_key: dict[str, set[str]] = {}
    for request, response in zip(batch.requests, responses, strict=True):
        by_key.setdefault(request.entity_key, set()).add(response.variant)
        assert response.version == (v1 if response.variant == "a" else v2)
        assert len(response.request_id) == 32  # assigned by the gateway
    assert all(len(variants) == 1 for variants in by_key.values())
    share = sum(r.variant == "a" for r in responses) / len(responses)
    assert 0.60 < share < 0.80
    logged = await read_topic(stack.kafka, TopicNames(stack.kafka.topic_prefix).predictions, 1000)
    events = [events_pb2.PredictionEvent.FromString(value) for value in logged]
    assert sorted(e.request_id for e in events) == sorted(r.request_id for r in responses)
    assert {(e.variant, e.version) for e in events} == {("a", v1), ("b", v2)}
    assert all(e.features["plan"].category == "pro" for e in events)


async def test_a_healthy_canary_walks_every_step_and_is_promoted(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    v1, v2 = await stack.register_linear(1), await stack.register_linear(2)
    await stack.champion(v1)
    gateway = await stack.gateway(canary_min_requests=15, canary_min_duration_s=0)
    await set_policy(gateway, events_pb2.RoutingPolicy(model="churn", stable_version=v1))
    caplog.set_level(logging.WARNING, logger="driftloop.gateway.rollouts")
    started = await gateway.StartRollout(
        gateway_pb2.StartRolloutRequest(
            model="churn",
            candidate_version=v2,
            strategy=gateway_pb2.ROLLOUT_STRATEGY_CANARY,
            steps=[
                events_pb2.CanaryStep(weight_bp=w, min_requests=15) for w in (1000, 5000, 10_000)
            ],
        ),
        timeout=30,
        metadata=ADMIN,
    )
    assert started.canary.candidate_version == v2

    async def promoted() -> bool:
        policy = await gateway.GetRoutingPolicy(
            gateway_pb2.GetRoutingPolicyRequest(model="churn"), timeout=5
        )
        return bool(policy.stable_version == v2 and not policy.canary.candidate_version)

    await until(promoted, 60, traffic=gateway)
    champion = await stack.registry.ResolveAlias(
        registry_pb2.ResolveAliasRequest(model="churn", alias="champion"), timeout=5
    )
    assert champion.version == v2
    events = [
        events_pb2.ModelEvent.FromString(v)
        for v in await read_topic(stack.kafka, TopicNames(stack.kafka.topic_prefix).model_events, 8)
    ]
    kinds = [e.kind for e in events if e.model == "churn"]
    assert kinds.count(events_pb2.MODEL_EVENT_KIND_ROLLOUT_STEPPED) == 2
    assert events_pb2.MODEL_EVENT_KIND_PROMOTED in kinds
    assert (await predict(gateway)).version == v2
    # This gateway has no drift service: every event of the canary says so, and the log.
    rollout = [
        e
        for e in events
        if e.kind
        in (
            events_pb2.MODEL_EVENT_KIND_ROLLOUT_STARTED,
            events_pb2.MODEL_EVENT_KIND_ROLLOUT_STEPPED,
            events_pb2.MODEL_EVENT_KIND_PROMOTED,
        )
    ]
    assert len(rollout) == 4 and all(NO_QUALITY in e.reason for e in rollout)
    assert any(NO_QUALITY in r.getMessage() for r in caplog.records if r.levelname == "WARNING")


@pytest.mark.parametrize(
    ("entry_point", "reason"),
    [("tests.user_model:Failing", "error rate"), ("tests.user_model:Slow", "p99 latency")],
)
async def test_a_bad_canary_is_rolled_back_within_one_step(
    stack: Stack, entry_point: str, reason: str
) -> None:
    v1 = await stack.register_linear(1)
    bad = await stack.register_user(entry_point)
    await stack.champion(v1)
    # Output distance is switched off: each case is about its own signal.
    gateway = await stack.gateway(
        canary_min_requests=1000, canary_min_duration_s=600, canary_max_output_distance=1.0
    )
    await set_policy(gateway, events_pb2.RoutingPolicy(model="churn", stable_version=v1))
    await gateway.StartRollout(
        gateway_pb2.StartRolloutRequest(
            model="churn",
            candidate_version=bad,
            strategy=gateway_pb2.ROLLOUT_STRATEGY_CANARY,
            steps=[
                events_pb2.CanaryStep(weight_bp=2000, min_requests=1000, min_duration_s=600),
                events_pb2.CanaryStep(weight_bp=10_000),
            ],
        ),
        timeout=30,
        metadata=ADMIN,
    )

    async def rolled_back() -> bool:
        policy = await gateway.GetRoutingPolicy(
            gateway_pb2.GetRoutingPolicyRequest(model="churn"), timeout=5
        )
        return not policy.canary.candidate_version

    await until(
        rolled_back, 60, traffic=gateway
    )  # traffic never fails: stable answers for the candidate
    policy = await gateway.GetRoutingPolicy(
        gateway_pb2.GetRoutingPolicyRequest(model="churn"), timeout=5
    )
    assert policy.stable_version == v1
    events = [
        events_pb2.ModelEvent.FromString(v)
        for v in await read_topic(stack.kafka, TopicNames(stack.kafka.topic_prefix).model_events, 5)
    ]
    rollback = [e for e in events if e.kind == events_pb2.MODEL_EVENT_KIND_ROLLED_BACK]
    assert len(rollback) == 1 and reason in rollback[0].reason and rollback[0].version == bad
    assert not any(e.kind == events_pb2.MODEL_EVENT_KIND_ROLLOUT_STEPPED for e in events)


async def test_failed_calls_are_logged_with_their_status_and_caller_mistakes_are_not(
    stack: Stack,
) -> None:
    v1 = await stack.register_linear(1)
    bad = await stack.register_user("tests.user_model:Failing")
    await stack.champion(v1)
    # Errors are allowed here, so that the canary stays for the whole test.
    gateway = await stack.gateway(canary_max_error_rate_increase=1.0)
    await set_policy(gateway, events_pb2.RoutingPolicy(model="churn", stable_version=v1))
    policy = await gateway.StartRollout(
        gateway_pb2.StartRolloutRequest(
            model="churn",
            candidate_version=bad,
            strategy=gateway_pb2.ROLLOUT_STRATEGY_CANARY,
            steps=[
                events_pb2.CanaryStep(weight_bp=5000, min_requests=10_000, min_duration_s=3600),
                events_pb2.CanaryStep(weight_bp=10_000),
            ],
        ),
        timeout=30,
        metadata=ADMIN,
    )
    responses = [await predict(gateway, request_id=f"r{n}") for n in range(60)]
    assert all(r.version == v1 for r in responses)  # the stable fallback answered them all
    # Caller mistakes (a row that does not fit the schema), one routed to each version.
    mistakes = {
        routing.route(policy, "", f"mistake-{n}").variant: f"mistake-{n}" for n in range(20)
    }
    assert set(mistakes) == {"canary", "stable"}
    row = common_pb2.Row()
    row.CopyFrom(ROW)
    row.features["x0"].category = "not a number"
    for request_id in mistakes.values():
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await gateway.Predict(
                gateway_pb2.PredictRequest(model="churn", request_id=request_id, row=row),
                timeout=10,
            )
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    service = stack.gateways[-1]
    counts = service.prediction_log.counts
    await until(lambda: asyncio.sleep(0, result=counts.delivered == counts.offered))
    logged = [
        events_pb2.PredictionEvent.FromString(value)
        for value in await read_topic(
            stack.kafka, TopicNames(stack.kafka.topic_prefix).predictions, counts.offered
        )
    ]
    failed = [e for e in logged if e.error]
    assert len(logged) == counts.offered == 60 + len(failed) and 10 < len(failed) < 50
    answers = {e.request_id: e for e in logged if not e.error}
    assert set(answers) == {f"r{n}" for n in range(60)}  # no mistake was logged
    for event in failed:
        assert (event.version, event.variant) == (bad, "canary")
        assert event.error in ("INTERNAL", "UNKNOWN") and not event.HasField("output")
        assert event.features["plan"].category == "pro" and event.HasField("time")
        answer = answers[event.request_id]  # then answered by stable, logged as such
        assert (answer.version, answer.variant, answer.error) == (v1, "stable", "")
        assert answer.HasField("output")
    # The gateway's own analysis counts the same failures, and no mistake among them.
    candidate = service.recorder.stats("churn", bad, 0.0)
    assert (candidate.requests, candidate.errors) == (len(failed), len(failed))


async def test_blue_green_switch_and_rollback_take_effect_on_the_next_request(stack: Stack) -> None:
    v1, v2 = await stack.register_linear(1), await stack.register_linear(2)
    await stack.champion(v1)
    gateway = await stack.gateway()
    await set_policy(gateway, events_pb2.RoutingPolicy(model="churn", stable_version=v1))
    assert (await predict(gateway)).version == v1
    await gateway.StartRollout(
        gateway_pb2.StartRolloutRequest(
            model="churn",
            candidate_version=v2,
            strategy=gateway_pb2.ROLLOUT_STRATEGY_BLUE_GREEN,
            hold_s=600,
        ),
        timeout=30,
        metadata=ADMIN,
    )
    switched = await predict(gateway)
    assert (switched.version, switched.variant) == (v2, "green")
    await gateway.Rollback(
        gateway_pb2.RollbackRequest(model="churn", reason="looks wrong"), timeout=10, metadata=ADMIN
    )
    assert (await predict(gateway)).version == v1
    with pytest.raises(grpc.aio.AioRpcError) as nothing:
        await gateway.Rollback(
            gateway_pb2.RollbackRequest(model="churn"), timeout=10, metadata=ADMIN
        )
    assert nothing.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    await gateway.StartRollout(
        gateway_pb2.StartRolloutRequest(
            model="churn",
            candidate_version=v2,
            strategy=gateway_pb2.ROLLOUT_STRATEGY_BLUE_GREEN,
            hold_s=600,
        ),
        timeout=30,
        metadata=ADMIN,
    )
    await gateway.Promote(
        gateway_pb2.PromoteRequest(model="churn", reason="ship it"), timeout=10, metadata=ADMIN
    )
    assert (await predict(gateway)).version == v2
    champion = await stack.registry.ResolveAlias(
        registry_pb2.ResolveAliasRequest(model="churn", alias="champion"), timeout=5
    )
    assert champion.version == v2


async def test_shadow_mirrors_every_request_without_changing_live_answers(stack: Stack) -> None:
    v1, v2 = await stack.register_linear(1), await stack.register_linear(2)
    gateway = await stack.gateway()
    policy = await set_policy(gateway, events_pb2.RoutingPolicy(model="churn", stable_version=v1))
    without_shadow = [await predict(gateway, request_id=f"r{n}") for n in range(50)]
    policy.shadow.CopyFrom(events_pb2.ShadowPlan(versions=[v2], sample_bp=10_000))
    await set_policy(gateway, policy, expected=policy.revision)
    with_shadow = [await predict(gateway, request_id=f"r{n}") for n in range(50)]
    assert [r.output for r in with_shadow] == [r.output for r in without_shadow]
    assert all(r.version == v1 for r in with_shadow)
    mirrored = [
        events_pb2.ShadowRequest.FromString(v)
        for v in await read_topic(
            stack.kafka, TopicNames(stack.kafka.topic_prefix).shadow_requests, 50
        )
    ]
    assert sorted(m.request_id for m in mirrored) == sorted(f"r{n}" for n in range(50))
    assert all(
        list(m.shadow_versions) == [v2]
        and m.live.version == v1
        and m.live_output == with_shadow[0].output
        for m in mirrored
    )


async def test_two_replicas_route_every_key_the_same_way(stack: Stack) -> None:
    v1, v2 = await stack.register_linear(1), await stack.register_linear(2)
    first = await stack.gateway()
    second = await stack.gateway()
    policy = await set_policy(
        first,
        events_pb2.RoutingPolicy(
            model="churn",
            stable_version=v1,
            variants=[
                events_pb2.Variant(name="a", version=v1, weight_bp=5000),
                events_pb2.Variant(name="b", version=v2, weight_bp=5000),
            ],
        ),
    )

    async def second_has_it() -> bool:
        try:
            seen = await second.GetRoutingPolicy(
                gateway_pb2.GetRoutingPolicyRequest(model="churn"), timeout=5
            )
        except grpc.aio.AioRpcError:
            return False
        return bool(seen.revision == policy.revision)

    await until(second_has_it)
    for n in range(300):
        key = f"user-{n}"
        assert (await predict(first, key)).variant == (await predict(second, key)).variant
    controllers = [g.lease.held for g in stack.gateways]
    await until(lambda: asyncio.sleep(0, result=sum(g.lease.held for g in stack.gateways) == 1))
    assert sum(g.lease.held for g in stack.gateways) == 1, controllers


async def test_a_broker_outage_costs_log_records_never_requests(
    stack: Stack, tmp_path: Path
) -> None:
    broker = LocalBroker(find_kafka_libs(REPO), tmp_path / "outage-kafka")
    await asyncio.to_thread(broker.start)
    try:
        kafka = stack.kafka.model_copy(update={"bootstrap_servers": broker.bootstrap_servers})
        await ensure_topics(kafka, broker.bootstrap_servers)
        version = await stack.register_linear(1)
        gateway = await stack.gateway(bootstrap=broker.bootstrap_servers, log_buffer=100)
        service = stack.gateways[-1]
        await set_policy(gateway, events_pb2.RoutingPolicy(model="churn", stable_version=version))
        for n in range(100):
            await predict(gateway, request_id=f"before-{n}")
        counts = service.prediction_log.counts

        async def drained(total: int) -> None:
            deadline = time.monotonic() + 90
            while service.prediction_log.queued or counts.delivered + counts.dropped < total:
                assert time.monotonic() < deadline, f"the log never drained: {counts}"
                await asyncio.sleep(0.2)

        # Stopped with nothing in flight: a record in flight at the instant of a failure may
        # be written although its acknowledgement is lost (counted dropped, yet on the topic).
        await drained(100)
        await asyncio.to_thread(broker.stop)
        during = [await predict(gateway, request_id=f"during-{n}") for n in range(300)]
        assert all(response.version == version for response in during)  # not one failed call

        await asyncio.to_thread(broker.start)
        for n in range(100):
            await predict(gateway, request_id=f"after-{n}")
        await drained(500)
        assert counts.dropped > 0  # the outage cost records (100-record buffer, 300 requests)
        dropped = counts.dropped
        for n in range(100):  # once the broker is back, nothing more is lost
            await predict(gateway, request_id=f"later-{n}")
        await drained(600)
        assert counts.dropped == dropped

        names = TopicNames(kafka.topic_prefix)
        logged = await read_topic(kafka, names.predictions, counts.delivered, seconds=30)
        ids = [events_pb2.PredictionEvent.FromString(value).request_id for value in logged]
        assert len(ids) == len(set(ids)) == counts.delivered  # exact: delivered = on the topic
        assert counts.offered == 600 == counts.delivered + counts.dropped
        assert {f"before-{n}" for n in range(100)} <= set(ids)
        assert {f"later-{n}" for n in range(100)} <= set(ids)  # logging resumed by itself
    finally:
        for service in list(stack.gateways):
            await service.stop(0)
            stack.gateways.remove(service)
        await asyncio.to_thread(broker.stop)


async def test_a_dead_inference_endpoint_is_skipped_within_the_deadline(stack: Stack) -> None:
    from driftloop.kafka.local_broker import free_port

    version = await stack.register_linear(1)
    gateway = await stack.gateway(
        inference_targets=[f"127.0.0.1:{free_port()}", f"127.0.0.1:{stack.inference.port}"]
    )
    await set_policy(gateway, events_pb2.RoutingPolicy(model="churn", stable_version=version))
    responses = [await predict(gateway) for _ in range(20)]
    assert all(r.version == version for r in responses)


async def test_a_registered_version_starts_the_configured_rollout(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    v1 = await stack.register_linear(1)
    await stack.champion(v1)
    caplog.set_level(logging.WARNING, logger="driftloop.gateway.server")
    gateway = await stack.gateway(auto_rollout="blue-green", blue_green_hold_s=0)
    assert any(NO_QUALITY in r.getMessage() for r in caplog.records)  # no drift service
    await set_policy(gateway, events_pb2.RoutingPolicy(model="churn", stable_version=v1))
    service = stack.gateways[-1]
    await until(lambda: asyncio.sleep(0, result=service.lease.held))
    v2 = await stack.register_linear(2)

    async def promoted() -> bool:
        policy = await gateway.GetRoutingPolicy(
            gateway_pb2.GetRoutingPolicyRequest(model="churn"), timeout=5
        )
        return bool(policy.stable_version == v2)

    await until(promoted, 60)
    assert (await predict(gateway)).version == v2
    champion = await stack.registry.ResolveAlias(
        registry_pb2.ResolveAliasRequest(model="churn", alias="champion"), timeout=5
    )
    assert champion.version == v2


async def test_with_no_policy_the_champion_is_served_and_followed_and_a_rollout_starts(
    stack: Stack,
) -> None:
    v1, v2, v3 = [await stack.register_linear(seed) for seed in (1, 2, 3)]
    await stack.champion(v1)
    gateway = await stack.gateway()
    first = await predict(gateway)
    assert (first.version, first.variant) == (v1, routing.STABLE)
    shown = await gateway.GetRoutingPolicy(
        gateway_pb2.GetRoutingPolicyRequest(model="churn"), timeout=5
    )
    assert (shown.stable_version, shown.revision) == (v1, 0)

    # The alias moves: the gateway hears it on model-events and serves the new champion.
    await stack.champion(v2, expected=v1)

    async def follows() -> bool:
        return (await predict(gateway)).version == v2

    await until(follows, 30)
    assert stack.gateways[-1].book.get("churn") is None  # still no policy written

    # A rollout starts from the default: its policy is the first one written.
    started = await gateway.StartRollout(
        gateway_pb2.StartRolloutRequest(
            model="churn",
            candidate_version=v3,
            strategy=gateway_pb2.ROLLOUT_STRATEGY_BLUE_GREEN,
            hold_s=600,
        ),
        timeout=30,
        metadata=ADMIN,
    )
    assert (started.stable_version, started.blue_green.active_version) == (v2, v3)
    assert started.revision == 1
    after = await predict(gateway)
    assert (after.version, after.variant) == (v3, routing.GREEN)
