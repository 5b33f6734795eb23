"""Every query of the Grafana dashboards (deploy/grafana/dashboards) against a real run of
the loop: each ClickHouse query run as Grafana runs it, each Prometheus metric found on
the services' live /metrics.

Grafana cannot run here, so the test does what Grafana and the ClickHouse plugin do to a
query (tests/grafana_sql.py: $__conditionalAll, the template variables, the plugin's
macros) and runs the result on the embedded ClickHouse engine. The data comes from the
standalone composition on the real broker: the demo's scenario (v1 serves, the world
changes, the drift service alerts, the retrainer trains and gates a new version, the
gateway ramps a canary and promotes it), then a canary of the old version rolled back,
an A/B experiment with a shadow version (compared by the shadow service) and an
operator's rollback of the champion alias.
Each ClickHouse query must return rows, with the columns and types its panel reads;
each metric a Prometheus panel reads must be exposed (a `# TYPE` line) by the services.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from deploy.grafana import generate
from deploy.grafana.generate import NUMBER, SQL, TEXT, TIME, Kind, PromQL
from driftloop.cli.demo import OVERRIDES
from driftloop.cli.loop import MODEL, LoopResult, Scenario, customer, first_champion, run_loop
from driftloop.cli.stack import HOST, Services, running_services
from driftloop.cli.up import SERVICES
from driftloop.clickhouse.client import ClickHouse
from driftloop.client import DriftloopClient
from driftloop.client.client import RUN_IN_PROGRESS
from driftloop.kafka.local_broker import free_port
from driftloop.kafka.producer import EventProducer
from driftloop.kafka.topics import TopicNames
from driftloop.kit.settings import KafkaSettings
from driftloop.models.artifacts import LocalArtifactStore
from driftloop.v1 import events_pb2
from tests.grafana_sql import Request, Selection, render
from tests.metric_names import missing, scrape

# The demo's loop, faster: labels 1 s late, the change after 2,000 requests, no settling.
SCENARIO = Scenario(change_after=2000, label_delay_s=1.0, settle_s=0.0, timeout_s=120.0)
TYPES = {
    TIME: re.compile(r"(Nullable\()?DateTime(64)?(\(.*\))?\)?"),
    NUMBER: re.compile(r"(Nullable\()?(U?Int(8|16|32|64|128|256)|Float(32|64)|Decimal.*)\)?"),
    TEXT: re.compile(
        r"(LowCardinality\()?(Nullable\()?(String|FixedString\(\d+\)|Enum(8|16)\(.*\))\)?\)?"
    ),
}


@dataclass(frozen=True)
class Run:
    result: LoopResult
    metrics_pages: list[str]  # the services' /metrics, read before they stopped


@dataclass(frozen=True)
class Found:
    where: str
    sql: str


def clickhouse_queries(model: dict[str, Any], uid: str) -> Iterator[Found]:
    """The ClickHouse SQL of a dashboard's JSON: panels, annotations, variables."""
    ours = generate.CLICKHOUSE
    for panel in model["panels"]:
        for target in panel.get("targets", []):
            if target["datasource"] == ours:
                yield Found(f"{uid} / {panel['title']}", target["rawSql"])
    for annotation in model["annotations"]["list"]:
        if annotation["datasource"] == ours:
            yield Found(f"{uid} / annotation {annotation['name']}", annotation["target"]["rawSql"])
    for variable in model["templating"]["list"]:
        if variable["datasource"] == ours:
            yield Found(f"{uid} / variable {variable['name']}", variable["query"])


async def serve_experiment(
    services: Services, client: DriftloopClient, producer: EventProducer, names: TopicNames
) -> int:
    """An A/B test of the new champion against v1, v1 also as a shadow; every customer
    labelled at once. Returns the requests served."""
    result_versions = await client.list_versions(MODEL)
    champion = (await client.resolve_alias(MODEL, "champion")).version
    first = min((v.version for v in result_versions), key=int)
    current = services.gateway.book.get(MODEL)
    policy = events_pb2.RoutingPolicy(
        model=MODEL,
        stable_version=champion,
        salt="grafana",
        variants=[
            events_pb2.Variant(name="a", version=champion, weight_bp=5000),
            events_pb2.Variant(name="b", version=first, weight_bp=5000),
        ],
    )
    policy.shadow.versions.append(first)
    policy.shadow.sample_bp = 10_000
    await client.set_routing_policy(policy, current.revision if current else 0)
    rng = random.Random(11)
    served = 0
    for _ in range(15):
        batch = [customer(rng, changed=True) for _ in range(100)]
        keys = [f"customer-{rng.randrange(300)}" for _ in batch]
        responses = await client.serve_batch(MODEL, [row for row, _ in batch], keys)
        deliveries = [
            await producer.enqueue(
                names.labels,
                response.request_id,
                events_pb2.LabelEvent(request_id=response.request_id, label=truth, source="crm"),
            )
            for (_, truth), response in zip(batch, responses, strict=True)
        ]
        await asyncio.gather(*deliveries)
        served += len(batch)
    return served


async def until_stored(clickhouse: ClickHouse, sql: str, count: int, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while int((await clickhouse.query(sql)).scalar() or 0) < count:
        assert time.monotonic() < deadline, f"fewer than {count} rows: {sql}"
        await asyncio.sleep(0.3)


async def retraining_settled(client: DriftloopClient) -> None:
    """The loop's policy retrains on its own (a later drift alert, new labelled data): turn it
    off, let a run in flight end, and roll back a rollout it started, so that the rollout this
    test starts next is the only one."""
    policy = await client.training_policy(MODEL)
    policy.enabled = False
    await client.set_training_policy(policy, policy.revision)
    for run in await client.retrain_runs(MODEL):
        if run.state in RUN_IN_PROGRESS:
            await client.wait_for_run(run.run_id, timeout_s=60)
    routing = await client.routing_policy(MODEL)
    if routing.canary.candidate_version or routing.shadow_gate.candidate_version:
        await client.rollback(MODEL, reason="the test's own rollout comes next")


async def produce_a_run(
    kafka_settings: KafkaSettings, clickhouse: ClickHouse, tmp_path: Path
) -> Run:
    """The loop closed, then an experiment and a rollback; the services' /metrics read
    before they stop."""
    assert kafka_settings.bootstrap_servers is not None
    names = TopicNames(kafka_settings.topic_prefix)
    metrics_ports = {name: free_port(HOST) for name in SERVICES}
    settings = {
        name: {**OVERRIDES.get(name, {}), "metrics_port": port}
        for name, port in metrics_ports.items()
    }
    settings["shadow"]["compare_every_s"] = 3600  # rounds are run below, when wanted
    # The demo's 1 s budget per call, on a machine other test runs share, is not this
    # test's subject: a batch that waits for the CPU must not end the run.
    settings["gateway"]["request_timeout_s"] = 5
    producer = EventProducer(kafka_settings, kafka_settings.bootstrap_servers)
    await producer.start()
    try:
        async with (
            running_services(
                kafka_settings,
                kafka_settings.bootstrap_servers,
                clickhouse,
                LocalArtifactStore(tmp_path / "artifacts"),
                SecretStr("grafana-test"),
                overrides=settings,
            ) as services,
            DriftloopClient(services.client_settings("operator")) as client,
        ):
            first = await first_champion(services, client, tmp_path / "train.csv", SCENARIO.seed)
            result = await run_loop(
                services, client, producer, names, clickhouse, first.version, SCENARIO
            )
            assert result.promoted_at is not None, [s.text for s in result.stages]
            await retraining_settled(client)
            await client.start_rollout(MODEL, first.version, "canary", reason="one more look")
            await client.rollback(MODEL, reason="v1 stays retired")
            served = await serve_experiment(services, client, producer, names)
            predictions = clickhouse.table("predictions")
            await until_stored(
                clickhouse,
                f"SELECT count() FROM {predictions} FINAL WHERE role = 'shadow'",
                served,
            )
            await until_stored(
                clickhouse,
                f"SELECT count() FROM {clickhouse.table('labels')} FINAL",
                result.labels + served,
            )
            # The shadow service's periodic round, now rather than in an hour.
            assert await services.shadow.reports.round(dt.timedelta(minutes=10)) >= 2
            await client.set_alias(
                MODEL, "champion", first.version, reason="operator rolled back to v1"
            )
            # The drift service has the rollout history up to the operator's move.
            await until_stored(
                clickhouse,
                f"SELECT count() FROM {clickhouse.table('model_events')} FINAL "
                "WHERE kind = 'alias_moved' AND alias = 'champion' AND actor != 'gateway'",
                2,
            )
            pages = [await asyncio.to_thread(scrape, HOST, port) for port in metrics_ports.values()]
    finally:
        await producer.stop()
    return Run(result, pages)


def kind_of(type_name: str) -> Kind | None:
    return next((kind for kind, form in TYPES.items() if form.fullmatch(type_name)), None)


def in_database(sql: str, request: Request, clickhouse: ClickHouse) -> str:
    """The query as the plugin sends it, on this test's database instead of `driftloop`."""
    return re.sub(r"\bdriftloop\.", f"{clickhouse.database}.", render(sql, request))


async def check(
    clickhouse: ClickHouse, found: Found, spec: SQL, request: Request, need_rows: bool
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Problems with one query's answer (none when it is what the panel reads), and rows."""
    sql = in_database(found.sql, request, clickhouse)
    try:
        described = await clickhouse.query(f"DESCRIBE TABLE ({sql})")
        result = await clickhouse.query(sql)
    except Exception as error:  # noqa: BLE001  # every failing panel is reported at once
        return [f"{found.where}: {error}\n  {sql}"], []
    columns = [(str(name), str(kind)) for name, kind, *_ in described.rows]
    problems = []
    expected = list(spec.columns.items())
    if [(name, kind_of(type_name)) for name, type_name in columns] != expected:
        problems.append(f"{found.where}: columns {columns}, expected {expected}")
    if need_rows and not result.rows:
        problems.append(f"{found.where}: no rows\n  {sql}")
    for name, kind in expected:
        if kind is TIME and name in result.columns:
            index = result.columns.index(name)
            if any(row[index] is None for row in result.rows):
                problems.append(f"{found.where}: a null time in {name}")
    return problems, result.rows


async def requests(
    clickhouse: ClickHouse, result: LoopResult, start: dt.datetime, end: dt.datetime
) -> tuple[Request, Request]:
    """The dashboards as an operator opens them: the model, every version ("All", the
    values of the version variable's own query), then v1 alone."""
    model = {"model": Selection((MODEL,))}
    interval = dt.timedelta(seconds=2)
    variable = generate.VERSION_VARIABLE.query.sql
    answer = await clickhouse.query(
        in_database(variable, Request(start, end, interval, model), clickhouse)
    )
    versions = tuple(str(row[0]) for row in answer.rows)
    assert result.first_champion in versions and result.champion in versions, versions
    every = Selection(versions, all=True, multi=True)
    one = Selection((result.first_champion,), multi=True)
    return (
        Request(start, end, interval, {**model, "version": every}),
        Request(start, end, interval, {**model, "version": one}),
    )


async def test_every_dashboard_query_reads_what_a_real_run_has(
    kafka_settings: KafkaSettings, clickhouse: ClickHouse, tmp_path: Path
) -> None:
    started = dt.datetime.now(dt.UTC)
    run = await produce_a_run(kafka_settings, clickhouse, tmp_path)
    ended = dt.datetime.now(dt.UTC)
    queries = [q for dashboard in generate.DASHBOARDS for _, q in generate.queries(dashboard)]
    read = {metric for q in queries if isinstance(q, PromQL) for metric in q.metrics}
    absent = missing(read, run.metrics_pages)
    assert read and not absent, f"dashboards read metrics no service exposes: {absent}"

    specs = {q.sql: q for q in queries if isinstance(q, SQL)}
    margin = dt.timedelta(minutes=1)
    every, one = await requests(clickhouse, run.result, started - margin, ended + margin)
    problems: list[str] = []
    answers: dict[str, list[tuple[Any, ...]]] = {}
    checked = set()
    for dashboard in generate.DASHBOARDS:
        model = json.loads((generate.FOLDER / dashboard.file).read_text())
        for found in clickhouse_queries(model, dashboard.uid):
            spec = specs.get(found.sql)
            if spec is None:
                problems.append(f"{found.where}: not in deploy/grafana/generate.py")
                continue
            for request, need_rows in ((every, True), (one, False)):
                found_problems, rows = await check(clickhouse, found, spec, request, need_rows)
                problems += found_problems
                answers.setdefault(found.where, rows)
            checked.add(found.sql)
    assert not problems, "\n".join(problems)
    assert checked == set(specs), "every query of the code is in the JSON"
    # What the panels show is what happened.
    rollouts = "driftloop-rollouts / annotation"
    assert {row[3] for row in answers[f"{rollouts} Canary steps"]} == {
        "rollout_started",
        "rollout_stepped",
    }
    promotions = {row[3] for row in answers[f"{rollouts} Promotions"]}
    assert promotions == {"promoted", "alias_moved"}, "the canary's, and v1 made champion"
    rollbacks = {row[3] for row in answers[f"{rollouts} Rollbacks and halted retraining"]}
    assert {"rolled_back", "alias_moved"} <= rollbacks, "the canary's, and the operator's"
    events = [row[1] for row in answers["driftloop-rollouts / Rollout events"]]
    assert {"rollout_stepped", "rolled_back", "promoted"} <= set(events), events
    psi = answers["driftloop-drift / PSI per feature"]
    assert max(row[2] for row in psi) > generate.PSI_ALERT, "the change shows past the line"
