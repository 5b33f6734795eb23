"""Benchmark: how cost grows. Curves, not points, each measured on the real code:

- drift round: the drift service's windowed round (Evaluator.evaluate_active: last-N
  window of every version with live traffic, plus the last complete hour's window on the
  first round; report, drift_metrics insert, alerts) over 1, 10 and 100 versions, each
  with --round-rows live predictions, on embedded ClickHouse (chDB), in this process;
- window report: the drift service's report entry point (Evaluator.report: the window
  from ClickHouse, then the report) over a version holding exactly 10k, 100k and 1M rows,
  and over the newest 10k rows of that version (what the version's history costs);
- sink throughput: the drift service's sink (bench/peers/sink_side.py's LogSink with
  online detection, BatchConsumer) in 1 and 2 processes of one consumer group, on a topic
  of 6 partitions pre-filled with --sink-records predictions (20 features) on a local
  broker; each process has its own chDB folder;
- gateway: registry, inference and gateway processes, 1, 100 and 1,000 models each with
  a routing policy; traffic at --rate req/s spread round-robin over all of them; the
  gateway's resident memory (VmRSS), its p50/p99 latency and CPU per call, and the CPU
  the registry's process (the retrainer, its trigger round kept out of the runs) used.

    make bench-scaling                                  (BENCH_SCALING_ARGS="--quick" to shrink)
    .venv/bin/python bench/scaling.py --quick           (smaller sizes)
    .venv/bin/python bench/scaling.py --parts round,window --window-rows 10000,100000

Rows are seeded through the production write path (PredictionLog.write of
PredictionEvents from tests/drift_streams) and multiplied inside ClickHouse (INSERT ...
SELECT with new request ids, times or versions, and the features jittered by 0.01 sigma),
so that a million rows take seconds to load. Prints Markdown tables (also written to
--out with the .md suffix, the figures to .json) and draws the curves with matplotlib
(--out, a PNG; --replot redraws it from the .json). Every process it starts is stopped
on the way out, also on Ctrl-C or failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import math
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from drift_sink import produce  # noqa: E402

import harness  # noqa: E402
from driftloop.clickhouse.backend import EmbeddedBackend  # noqa: E402
from driftloop.clickhouse.client import ClickHouse  # noqa: E402
from driftloop.clickhouse.prediction_log import PredictionLog  # noqa: E402
from driftloop.client import DriftloopClient  # noqa: E402
from driftloop.client.errors import FailedPrecondition  # noqa: E402
from driftloop.drift.alerts import Alerts  # noqa: E402
from driftloop.drift.baselines import VersionInfo  # noqa: E402
from driftloop.drift.config import DriftSettings  # noqa: E402
from driftloop.drift.evaluator import Evaluator  # noqa: E402
from driftloop.drift.server import thresholds_of  # noqa: E402
from driftloop.drift.store import DriftStore  # noqa: E402
from driftloop.drift.windows import Window, WindowReader  # noqa: E402
from driftloop.kafka.codecs import log_decoders  # noqa: E402
from driftloop.kafka.consumer import BatchConsumer, Record  # noqa: E402
from driftloop.kafka.dead_letter import DeadLetters  # noqa: E402
from driftloop.kafka.local_broker import LocalBroker, find_kafka_libs, free_port  # noqa: E402
from driftloop.kafka.producer import EventProducer  # noqa: E402
from driftloop.kafka.topics import TopicNames, ensure_topics  # noqa: E402
from driftloop.kit.settings import KafkaSettings  # noqa: E402
from driftloop.models.convert import OUTPUT_KINDS, row_to_proto, schema_to_proto  # noqa: E402
from driftloop.models.training import TrainedModel  # noqa: E402
from driftloop.v1 import events_pb2, gateway_pb2, registry_pb2  # noqa: E402
from harness import stack_client, stack_env, start_stack, stop_processes, wait_stack  # noqa: E402
from tests import drift_streams  # noqa: E402

TOKEN = "bench-token"
PARTS = ("round", "window", "sink", "gateway")
PARTITIONS = 6
# Rows written through PredictionLog.write at most; more are copies made in ClickHouse.
SEED_ROWS = 20_000
# The small window reported on beside each window size (the cost of a version's history).
HISTORY_PROBE = 10_000


@dataclass
class Curve:
    """One measured curve: x values and, per x, the named figures."""

    title: str
    x_name: str
    keys: tuple[str, ...]  # the figures the growth column follows (the plot: the first)
    points: list[tuple[int, dict[str, float]]] = field(default_factory=list)

    def add(self, x: int, **figures: float) -> None:
        self.points.append((x, figures))
        shown = ", ".join(f"{name} {value:,.3g}" for name, value in figures.items())
        print(f"    {self.x_name} {x:,}: {shown}", flush=True)


def ints(text: str) -> list[int]:
    return [int(part.replace("_", "")) for part in text.split(",") if part]


# ---------------------------------------------------------------- ClickHouse parts


class AnyVersion:
    """Every version has the same frozen baseline (the registry's answer, cached)."""

    def __init__(self, trained: TrainedModel) -> None:
        self._baseline = trained.baseline

    async def get(self, model: str, version: str) -> VersionInfo:
        return VersionInfo(model, version, "binary", self._baseline)


async def no_publish(alert: events_pb2.DriftAlert) -> None:
    return None


async def seed(
    log: PredictionLog,
    trained: TrainedModel,
    model: str,
    version: str,
    rows: int,
    start: dt.datetime,
) -> None:
    """`rows` live predictions one second apart from `start`, through PredictionLog.write."""
    for first in range(0, rows, SEED_ROWS):
        size = min(SEED_ROWS, rows - first)
        data = drift_streams.table(size, seed=first)
        events = drift_streams.stream(
            trained, data, model=model, version=version, first=first, start=start
        )
        await log.write(predictions=events.predictions)


async def copy_rows(
    clickhouse: ClickHouse,
    model: str,
    copies: range,
    *,
    version: str | None = None,
    shift_s: int = 0,
    limit: int = 0,
) -> None:
    """Copies of `model`'s version-1 rows made inside ClickHouse: copy n has request ids
    suffixed -n, features jittered by 0.01 sigma, times n * shift_s seconds later, and
    `version` (None: version n); `limit` rows at most (0: all)."""
    table = clickhouse.table("predictions")
    await clickhouse.command(
        f"INSERT INTO {table} SELECT p.* REPLACE ("
        "concat(p.request_id, '-', toString(n.number)) AS request_id, "
        f"p.time + toIntervalSecond(n.number * {shift_s}) AS time, "
        f"{'toString(n.number)' if version is None else '{version:String}'} AS version, "
        "mapApply((k, v) -> (k, v + randNormal(0, 0.01)), p.numbers) AS numbers) "
        f"FROM {table} AS p CROSS JOIN numbers({copies.start}, {len(copies)}) AS n "
        "WHERE p.model = {model:String} AND p.version = '1'" + (f" LIMIT {limit}" if limit else ""),
        {"model": model, "version": version or ""},
    )


def evaluator(clickhouse: ClickHouse, trained: TrainedModel) -> Evaluator:
    """The drift service's evaluator as its composition root builds it, with default
    settings, on this ClickHouse; baselines from memory, alerts published nowhere."""
    settings = DriftSettings()
    return Evaluator(
        WindowReader(clickhouse),
        DriftStore(clickhouse),
        AnyVersion(trained),
        Alerts(no_publish, settings.alert_debounce_s, settings.alert_quiet_events),
        thresholds_of(settings),
        settings.window_last_n,
        settings.window_min_rows,
        dt.timedelta(seconds=settings.time_window_s),
    )


async def timed(work: Awaitable[object]) -> float:
    started = time.perf_counter()
    await work
    return time.perf_counter() - started


async def round_curve(
    clickhouse: ClickHouse, trained: TrainedModel, versions: list[int], rows: int
) -> Curve:
    """Round time over 1..N versions of model `round`, each with `rows` predictions of the
    last `rows` seconds (live traffic)."""
    curve = Curve("drift round", "versions", ("round_s",))
    log = PredictionLog(clickhouse)
    now = dt.datetime.now(dt.UTC)
    await seed(log, trained, "round", "1", rows, now - dt.timedelta(seconds=rows))
    have = 1
    for count in sorted(versions):
        if count > have:
            await copy_rows(clickhouse, "round", range(have + 1, count + 1))
            have = count
        rounds = evaluator(clickhouse, trained)
        started = time.perf_counter()
        done = await rounds.evaluate_active()
        first = time.perf_counter() - started
        later = await timed(rounds.evaluate_active())
        if done != count:
            raise RuntimeError(f"the round evaluated {done} versions, expected {count}")
        curve.add(
            count,
            first_round_s=first,
            round_s=later,
            per_version_ms=later / count * 1000,
        )
    return curve


async def window_curve(
    clickhouse: ClickHouse, trained: TrainedModel, sizes: list[int], repeats: int
) -> Curve:
    """Report time over a window of N rows: version N of model `window` holds exactly N
    rows (old traffic: no round sees it), and the report is on its last N. Beside it, the
    report on the newest 10k rows of the same version: what a version's history costs a
    small window."""
    curve = Curve("window report", "rows", ("report_s",))
    log = PredictionLog(clickhouse)
    seeded = min(SEED_ROWS, max(sizes))
    await seed(log, trained, "window", "1", seeded, drift_streams.T0)
    rounds = evaluator(clickhouse, trained)

    async def report(version: str, rows: int) -> float:
        window = Window(last_n=rows)
        report = await rounds.report("window", version, window)  # warm: parts cached alike
        if report.rows != rows:
            raise RuntimeError(f"the report saw {report.rows} rows, expected {rows}")
        runs = repeats if rows <= 100_000 else 1  # a million rows take seconds each
        return statistics.median(
            [await timed(rounds.report("window", version, window)) for _ in range(runs)]
        )

    for rows in sorted(sizes):
        version = str(rows)
        copies = range(math.ceil(rows / seeded))
        await copy_rows(clickhouse, "window", copies, version=version, shift_s=seeded, limit=rows)
        seconds = await report(version, rows)
        curve.add(
            rows,
            report_s=seconds,
            per_row_us=seconds / rows * 1e6,
            newest_10k_s=await report(version, min(rows, HISTORY_PROBE)),
        )
    return curve


async def clickhouse_parts(args: argparse.Namespace, work: Path) -> list[Curve]:
    trained = drift_streams.train()
    clickhouse = ClickHouse(EmbeddedBackend(work / "clickhouse"), "bench")
    curves = []
    try:
        await clickhouse.apply_schema()
        if "round" in args.parts:
            print(
                f"[round] drift round over {args.versions} versions, "
                f"{args.round_rows:,} live rows each",
                flush=True,
            )
            curves.append(await round_curve(clickhouse, trained, args.versions, args.round_rows))
        if "window" in args.parts:
            print(f"[window] window report over the last {args.window_rows} rows", flush=True)
            curves.append(await window_curve(clickhouse, trained, args.window_rows, args.repeats))
    finally:
        await clickhouse.close()
    return curves


# ---------------------------------------------------------------- sink


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def say(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


async def sink_process(bootstrap: str, prefix: str, group: str, folder: Path) -> None:
    """One drift sink process of a consumer group, driven by lines on stdin: it reports
    its assignment until `go`, then consumes, reporting records seen per batch, until
    `stop`; last, the time of `go` and of its last batch's end, and its CPU seconds in
    between."""
    from peers.sink_side import log_sink

    # aiokafka logs each rebalancing step (up to ERROR); a real failure raises.
    logging.disable(logging.ERROR)
    backend = EmbeddedBackend(folder)
    clickhouse = ClickHouse(backend, "bench")
    await clickhouse.apply_schema()
    settings = KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=prefix)
    names = TopicNames(prefix)
    producer = EventProducer(settings, bootstrap)
    await producer.start()
    sink = log_sink(clickhouse)
    seen = 0
    first = last = cpu_first = cpu_last = 0.0

    async def handler(batch: Sequence[Record]) -> None:
        nonlocal seen, last, cpu_last
        await sink(batch)
        seen += len(batch)
        last, cpu_last = time.time(), cpu_seconds()
        say(seen=seen)

    consumer = BatchConsumer(
        settings,
        bootstrap,
        group_id=group,
        decoders=log_decoders(names.predictions, names.labels),
        handler=handler,
        dead_letters=DeadLetters(producer, names.dead_letter, "bench"),
        max_batch=50_000,
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    await consumer.start()
    try:
        line = asyncio.ensure_future(reader.readline())
        reported: list[int] | None = None
        while not line.done():
            assigned = consumer.assigned(names.predictions)
            if assigned != reported:
                say(assigned=assigned)
                reported = assigned
            await asyncio.wait([line], timeout=0.05)
        first, cpu_first = time.time(), cpu_seconds()  # `go`: the clocks start
        task = asyncio.create_task(consumer.run())
        await reader.readline()  # `stop` (or end of input)
        await consumer.stop()
        await task
        say(done=True, seen=seen, first=first, last=last, cpu=cpu_last - cpu_first)
    finally:
        await producer.stop()
        await clickhouse.close()


class SinkChild:
    """A sink process and what it last said."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.assigned: list[int] = []
        self.seen = 0
        self.result: dict[str, Any] = {}
        self.ended = False  # its output closed: it exited
        self.changed = asyncio.Event()

    async def listen(self) -> None:
        assert self.process.stdout is not None
        async for raw in self.process.stdout:
            text = raw.decode().strip()
            if not text.startswith("{"):
                continue
            said = json.loads(text)
            if "done" in said:
                self.result = said
            elif "assigned" in said:
                self.assigned = said["assigned"]
            else:
                self.seen = said["seen"]
            self.changed.set()
        self.ended = True
        self.changed.set()

    def tell(self, word: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{word}\n".encode())


async def wait_for(
    children: list[SinkChild], ready: Callable[[], bool], what: str, seconds: float = 180
) -> None:
    """Until `ready()` holds, on what the sink processes say (a process ending before it
    gave its result, or `seconds`, is an error)."""
    deadline = time.monotonic() + seconds
    while True:
        for child in children:
            child.changed.clear()
        if ready():
            return
        if any(child.ended and not child.result for child in children):
            codes = [child.process.returncode for child in children]
            raise RuntimeError(f"a sink process ended (exit codes {codes}) {what}")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RuntimeError(f"timed out {what}")
        waits = [asyncio.ensure_future(child.changed.wait()) for child in children]
        await asyncio.wait(waits, timeout=remaining, return_when="FIRST_COMPLETED")
        for waiting in waits:
            waiting.cancel()


async def sink_run(
    bootstrap: str, prefix: str, records: int, consumers: int, work: Path, run: int
) -> dict[str, float]:
    """`consumers` sink processes in one new group: wait until the group has spread the 6
    partitions over them, say go, wait until they saw every record, stop them."""
    group = f"{prefix}scaling-{run}"
    children: list[SinkChild] = []
    listeners = []
    try:
        for index in range(consumers):
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                __file__,
                "sink-process",
                bootstrap,
                prefix,
                group,
                str(work / f"sink-{run}-{index}"),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            children.append(SinkChild(process))
            listeners.append(asyncio.create_task(children[-1].listen()))

        def balanced() -> bool:
            parts = [p for child in children for p in child.assigned]
            return sorted(parts) == list(range(PARTITIONS)) and all(
                child.assigned for child in children
            )

        await wait_for(children, balanced, "waiting for the group to assign the partitions")
        for child in children:
            child.tell("go")
        await wait_for(
            children,
            lambda: sum(c.seen for c in children) >= records,
            "consuming the topic",
            max(180, records / 1000),  # 1,000 records/s would be far below any past run
        )
        for child in children:
            child.tell("stop")
        await wait_for(children, lambda: all(c.result for c in children), "stopping the sinks")
        for child in children:
            await child.process.wait()
    finally:
        await stop_processes([child.process for child in children])
        for listener in listeners:
            listener.cancel()
    first = min(child.result["first"] for child in children)
    last = max(child.result["last"] for child in children)
    cpu = sum(child.result["cpu"] for child in children)
    seen = sum(child.result["seen"] for child in children)
    return {
        "records_per_s": seen / (last - first),
        "records_per_cpu_s": seen / cpu,
        "seconds": last - first,
    }


async def sink_curve(args: argparse.Namespace, bootstrap: str, work: Path) -> Curve:
    curve = Curve("sink throughput", "consumers", ("records_per_s", "records_per_cpu_s"))
    prefix = f"scaling{int(time.time())}."
    settings = KafkaSettings(
        bootstrap_servers=bootstrap, topic_prefix=prefix, partitions=PARTITIONS
    )
    await ensure_topics(settings, bootstrap)
    print(f"[sink] producing {args.sink_records:,} predictions to 6 partitions", flush=True)
    await produce(settings, bootstrap, args.sink_records)
    for run, consumers in enumerate(args.consumers):
        print(f"[sink] {consumers} sink process(es), one group", flush=True)
        figures = await sink_run(bootstrap, prefix, args.sink_records, consumers, work, run)
        curve.add(consumers, **figures)
    return curve


# ---------------------------------------------------------------- gateway


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


@dataclass
class Calls:
    """What a run of gateway calls gave: latencies (ms) of the answered, failures by code."""

    latencies: list[float] = field(default_factory=list)
    failed: dict[str, int] = field(default_factory=dict)


async def spread_rate(
    target: str, bodies: list[bytes], rate: float, seconds: float, retry: bool = False
) -> Calls:
    """Gateway calls sent on a fixed schedule (open loop), the bodies taken in turn (at
    least one each when `retry`). `retry`: a failed call is repeated, for up to a minute,
    until it succeeds (a policy the gateway has not replayed yet, a model not loaded)."""
    calls = Calls()
    async with grpc.aio.insecure_channel(target) as channel:
        call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
            "/driftloop.v1.Gateway/Predict"
        )

        async def one(body: bytes) -> None:
            deadline = time.monotonic() + 60
            while True:
                started = time.perf_counter()
                try:
                    await call(body, timeout=10)
                except grpc.aio.AioRpcError as error:
                    if retry and time.monotonic() < deadline:
                        await asyncio.sleep(0.2)
                        continue
                    code = error.code().name
                    calls.failed[code] = calls.failed.get(code, 0) + 1
                    return
                calls.latencies.append((time.perf_counter() - started) * 1000)
                return

        tasks = []
        begin = time.perf_counter()
        for n in range(max(int(rate * seconds), len(bodies) if retry else 0)):
            delay = begin + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(bodies[n % len(bodies)])))
        await asyncio.gather(*tasks)
    return calls


async def add_models(
    client: DriftloopClient, digest: str, base: registry_pb2.ModelVersion, names: list[str]
) -> None:
    """Register a version of each model (same artifact) and route it as stable, 8 at a
    time (the gateway has inference load each new stable version before it takes the
    policy; a load that timed out on a busy machine is asked again, twice at most)."""

    async def one(name: str) -> None:
        record = registry_pb2.ModelVersion()
        record.CopyFrom(base)
        record.model = name
        record.artifact_sha256 = digest
        version = (await client.register(record)).version
        policy = events_pb2.RoutingPolicy(model=name, stable_version=version)
        for attempt in range(3):
            try:
                await client.set_routing_policy(policy, 0)
                return
            except FailedPrecondition:
                if attempt == 2:
                    raise

    for first in range(0, len(names), 8):
        await asyncio.gather(*(one(name) for name in names[first : first + 8]))


async def gateway_curve(args: argparse.Namespace, bootstrap: str, work: Path) -> Curve:
    curve = Curve("gateway", "models", ("rss_mb", "p99_ms"))
    registry_port, inference_port, gateway_port = free_port(), free_port(), free_port()
    stack = work / "stack"
    stack.mkdir()
    env = stack_env(bootstrap, stack, TOKEN, registry_port, inference_port, gateway_port)
    # Room for every model (default 16): round-robin traffic over more would have
    # inference reload models all the time, and the gateway would not be measured.
    env["DRIFTLOOP_INFERENCE_MAX_LOADED"] = str(min(1000, max(args.models)))
    # The retrainer is here as the registry. Its periodic trigger round asks the registry
    # for every model's champion, a chDB query each: about 4 s of CPU a round (every 30 s
    # by default) at 1,000 models, taken from the gateway, inference and this load on two
    # cores: the calls sent while it ran were slower (docs/benchmarks.md, "How cost
    # grows"). No round during the runs, unless the variable is set (30: the default).
    env.setdefault("DRIFTLOOP_RETRAINER_CHECK_EVERY_S", "3600")
    print("[gateway] starting the registry, inference and the gateway", flush=True)
    processes = await start_stack(env, work)
    client = None
    try:
        await wait_stack(processes, registry_port, inference_port, gateway_port)
        gateway = processes[2]
        client = stack_client(TOKEN, registry_port, inference_port, gateway_port)
        trained = drift_streams.train()
        digest = await client.upload_artifact(trained.model.to_bytes())
        base = drift_streams.version_record(trained, "m0", "")
        base.ClearField("version")
        base.schema.CopyFrom(schema_to_proto(trained.model.schema))
        base.output_kind = OUTPUT_KINDS["binary"]
        rng = np.random.default_rng(3)
        row = row_to_proto(
            dict(
                zip(
                    drift_streams.NAMES,
                    rng.normal(size=len(drift_streams.NAMES)).tolist(),
                    strict=True,
                )
            )
        )
        have = 0
        target = f"127.0.0.1:{gateway_port}"
        for count in sorted(args.models):
            print(f"[gateway] routing {count:,} models", flush=True)
            await add_models(client, digest, base, [f"m{i}" for i in range(have, count)])
            have = count
            bodies = [
                gateway_pb2.PredictRequest(
                    model=f"m{i}", entity_key=f"user-{i}", row=row
                ).SerializeToString()
                for i in range(count)
            ]
            # Every model answered once (policy replayed, model loaded), then a warm-up.
            await spread_rate(target, bodies, args.rate, 1.0, retry=True)
            await spread_rate(target, bodies, args.rate, 2.0)
            used = [harness.cpu_seconds(process.pid) for process in processes]
            calls = await spread_rate(target, bodies, args.rate, args.seconds)
            used = [harness.cpu_seconds(p.pid) - u for p, u in zip(processes, used, strict=True)]
            if not calls.latencies:
                raise RuntimeError(f"no gateway call was answered: {calls.failed}")
            if calls.failed:
                print(f"    failed calls: {calls.failed}", flush=True)
            values = np.asarray(calls.latencies)
            curve.add(
                count,
                rss_mb=rss_mb(gateway.pid),
                p50_ms=float(np.percentile(values, 50)),
                p99_ms=float(np.percentile(values, 99)),
                failed=sum(calls.failed.values()),
                gateway_cpu_us=used[2] / len(values) * 1e6,
                registry_cpu_pct=used[0] / args.seconds * 100,
            )
    except Exception:
        for name in ("retrainer", "inference", "gateway"):
            tail = (work / f"{name}.log").read_text(errors="replace").splitlines()[-5:]
            print(f"--- {name}.log, last lines:", *tail, sep="\n", file=sys.stderr)
        raise
    finally:
        if client is not None:
            await client.close()
        await stop_processes(processes)
    return curve


async def process_parts(args: argparse.Namespace, work: Path) -> list[Curve]:
    broker = LocalBroker(find_kafka_libs(REPO), work / "kafka")
    curves = []
    try:
        print("[kafka] starting a local broker", flush=True)
        bootstrap = await asyncio.to_thread(broker.start)
        if "sink" in args.parts:
            curves.append(await sink_curve(args, bootstrap, work))
        if "gateway" in args.parts:
            curves.append(await gateway_curve(args, bootstrap, work))
    finally:
        await asyncio.to_thread(broker.stop)
    return curves


# ---------------------------------------------------------------- output

COLUMNS = {
    "first_round_s": ("first round (last-N + hour window)", "{:.2f} s"),
    "round_s": ("next round (last-N only)", "{:.2f} s"),
    "per_version_ms": ("per version", "{:.1f} ms"),
    "report_s": ("report (read + statistics)", "{:.3f} s"),
    "per_row_us": ("per row", "{:.2f} µs"),
    "newest_10k_s": ("newest 10k rows of the same version", "{:.3f} s"),
    "records_per_s": ("records/s", "{:,.0f}"),
    "records_per_cpu_s": ("records per CPU-second", "{:,.0f}"),
    "seconds": ("time for the topic", "{:.1f} s"),
    "rss_mb": ("gateway RSS", "{:.0f} MB"),
    "p50_ms": ("p50", "{:.2f} ms"),
    "p99_ms": ("p99", "{:.2f} ms"),
    "failed": ("failed calls", "{:.0f}"),
    "gateway_cpu_us": ("gateway CPU per call", "{:.0f} µs"),
    "registry_cpu_pct": ("registry (retrainer) CPU", "{:.0f}% of a core"),
}


def markdown(curves: list[Curve]) -> str:
    """One Markdown table per curve, with each figure's ratio to the curve's first point."""
    out = []
    for curve in curves:
        names = list(curve.points[0][1])
        head = [curve.x_name, *(COLUMNS[name][0] for name in names), "growth"]
        out.append(f"**{curve.title}**\n")
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "---|" * len(head))
        base_x, base = curve.points[0]
        for x, figures in curve.points:
            cells = [f"{x:,}", *(COLUMNS[n][1].format(figures[n]) for n in names)]
            growth = ", ".join(
                f"{COLUMNS[key][0]} {figures[key] / base[key]:.2f}x" for key in curve.keys
            )
            cells.append(f"{growth} for {x / base_x:,.0f}x {curve.x_name}" if x != base_x else "")
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def plot(curves: list[Curve], path: Path, subtitle: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    columns = min(2, len(curves))
    lines = math.ceil(len(curves) / columns)
    figure, axes = pyplot.subplots(lines, columns, figsize=(5.2 * columns, 3.9 * lines))
    axes = np.atleast_1d(axes).ravel()
    for axis in axes[len(curves) :]:
        axis.set_visible(False)
    for axis, curve in zip(axes, curves, strict=False):
        xs = [x for x, _ in curve.points]
        if curve.title == "gateway":
            twin = axis.twinx()
            axis.plot(xs, [f["p99_ms"] for _, f in curve.points], "o-", label="p99 (ms)")
            axis.plot(xs, [f["p50_ms"] for _, f in curve.points], "s--", label="p50 (ms)")
            twin.plot(xs, [f["rss_mb"] for _, f in curve.points], "^-", color="C3")
            twin.set_ylabel("gateway RSS, MB (triangles)", color="C3")
            twin.set_ylim(bottom=0)
            axis.set_ylabel("latency (ms)")
            axis.legend(loc="upper left", fontsize=8)
        elif curve.title == "sink throughput":
            axis.bar(
                [str(x) for x in xs], [f["records_per_s"] for _, f in curve.points], color="C2"
            )
            for x, (_, figures) in zip(xs, curve.points, strict=True):
                per_cpu = f"{figures['records_per_cpu_s']:,.0f}\nper CPU-s"
                axis.annotate(per_cpu, (str(x), figures["records_per_s"]), ha="center", va="bottom")
            axis.set_ylabel("records/s (6 partitions)")
            axis.margins(y=0.2)
        else:
            key = curve.keys[0]
            axis.plot(xs, [f[key] for _, f in curve.points], "o-")
            axis.set_ylabel(f"{COLUMNS[key][0]}, s")
            axis.set_yscale("log")
        if curve.title != "sink throughput":
            axis.set_xscale("log")
            axis.set_xticks(xs, [f"{x:,}" for x in xs])
            axis.minorticks_off()
        axis.set_xlabel(curve.x_name)
        axis.set_title(curve.title)
        axis.grid(True, which="both", alpha=0.3)
    figure.suptitle(f"driftloop: how cost grows ({subtitle})", fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    pyplot.close(figure)


async def main(args: argparse.Namespace) -> int:
    if "sink" in args.parts or "gateway" in args.parts:
        find_kafka_libs(REPO)  # says how to get the broker's jars when they are missing
    work = Path(tempfile.mkdtemp(prefix="driftloop-bench-scaling-"))
    started = time.perf_counter()
    load = os.getloadavg()[0]
    curves: list[Curve] = []
    try:
        curves += await clickhouse_parts(args, work)
        if "sink" in args.parts or "gateway" in args.parts:
            curves += await process_parts(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    elapsed = time.perf_counter() - started
    subtitle = (
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, "
        f"load {load:.1f} at start, {elapsed:.0f} s in all"
    )
    write(curves, subtitle, args.out)
    return 0


def write(curves: list[Curve], subtitle: str, out: Path) -> None:
    """The table printed and saved (.md), the figures saved (.json), the plot (.png)."""
    table = markdown(curves)
    print(f"\n{table}\n{subtitle}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(f"{table}\n{subtitle}\n")
    saved = {"subtitle": subtitle, "curves": [dataclasses.asdict(curve) for curve in curves]}
    out.with_suffix(".json").write_text(json.dumps(saved, indent=1) + "\n")
    plot(curves, out, subtitle)
    print(f"written: {out} and its .md and .json")


def replot(out: Path) -> int:
    """The table and plot again from the figures a run saved (no measuring)."""
    saved = json.loads(out.with_suffix(".json").read_text())
    curves = [
        Curve(c["title"], c["x_name"], tuple(c["keys"]), [(x, f) for x, f in c["points"]])
        for c in saved["curves"]
    ]
    write(curves, saved["subtitle"], out)
    return 0


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--parts", default=",".join(PARTS), help="which curves, of " + ",".join(PARTS)
    )
    parser.add_argument("--versions", type=ints, default=[1, 10, 100])
    parser.add_argument("--round-rows", type=int, default=5_000, help="live rows per version")
    parser.add_argument("--window-rows", type=ints, default=[10_000, 100_000, 1_000_000])
    parser.add_argument(
        "--repeats", type=int, default=3, help="report runs per window size (1 above 100k rows)"
    )
    parser.add_argument("--sink-records", type=int, default=100_000)
    parser.add_argument("--consumers", type=ints, default=[1, 2])
    parser.add_argument("--models", type=ints, default=[1, 100, 1_000])
    parser.add_argument("--rate", type=float, default=300.0, help="gateway req/s")
    parser.add_argument("--seconds", type=float, default=8.0, help="gateway measured run")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img" / "scaling.png")
    parser.add_argument(
        "--replot", action="store_true", help="redraw --out from its saved .json, measure nothing"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smaller sizes: 1,10,30 versions of 2,000 rows; 10k,100k,300k rows; 60k "
        "records; 1,100,300 models, 4 s runs",
    )
    args = parser.parse_args(argv)
    args.parts = [part for part in args.parts.split(",") if part]
    if unknown := set(args.parts) - set(PARTS):
        parser.error(f"unknown parts {sorted(unknown)}: choose from {', '.join(PARTS)}")
    if args.quick:
        args.versions, args.round_rows = [1, 10, 30], 2_000
        args.window_rows = [10_000, 100_000, 300_000]
        args.sink_records, args.models, args.seconds = 60_000, [1, 100, 300], 4.0
    return args


if __name__ == "__main__":
    if sys.argv[1:2] == ["sink-process"]:
        bootstrap, prefix, group, folder = sys.argv[2:6]
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(sink_process(bootstrap, prefix, group, Path(folder)))
        sys.exit(0)
    try:
        arguments = parse(sys.argv[1:])
        sys.exit(replot(arguments.out) if arguments.replot else asyncio.run(main(arguments)))
    except KeyboardInterrupt:
        print("\ninterrupted: the processes it started are stopped", file=sys.stderr)
        sys.exit(130)
