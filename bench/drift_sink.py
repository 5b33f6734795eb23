"""Benchmark: the drift sink, Kafka -> ClickHouse, driven by the project's aiokafka
BatchConsumer (the default engine) and by a faust-streaming agent (the faust engine),
doing the same work (decode, Arrow tables, one insert per table, online detection).

Both read the same pre-produced topic of N PredictionEvents (20 features, protobuf) from
the earliest offset; each runs in its own process with its own chDB folder. Reported:
records per second from the first record to the last committed batch, and the process's
CPU seconds per 100k records, and records per CPU-second against the goal (>= 50,000,
online detection on).

    make bench-drift-sink              (N=200000; BENCH_SINK_RECORDS to change)
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from driftloop.kafka.local_broker import LocalBroker, find_kafka_libs  # noqa: E402
from driftloop.kafka.producer import EventProducer  # noqa: E402
from driftloop.kafka.topics import TopicNames, ensure_topics  # noqa: E402
from driftloop.kit.settings import KafkaSettings  # noqa: E402
from tests import drift_streams  # noqa: E402

RECORDS = int(os.environ.get("BENCH_SINK_RECORDS", "200000"))
GOAL_PER_CPU_SECOND = 50_000


async def produce(settings: KafkaSettings, bootstrap: str, records: int = RECORDS) -> None:
    """`records` seeded predictions (20 features) to the predictions topic, keyed by
    request id (so spread over its partitions)."""
    trained = drift_streams.train()
    chunk = min(20_000, records)
    producer = EventProducer(settings, bootstrap, linger_ms=20)
    await producer.start()
    topic = TopicNames(settings.topic_prefix).predictions
    try:
        for first in range(0, records, chunk):
            data = drift_streams.table(chunk, seed=first)
            stream = drift_streams.stream(trained, data, model="bench", version="1", first=first)
            for event in stream.predictions:
                await producer.enqueue(topic, event.request_id, event)
            print(f"  produced {first + chunk}/{records}", flush=True)
        await producer.flush()
    finally:
        await producer.stop()


async def run_side(
    name: str, bootstrap: str, prefix: str, folder: Path, env: dict[str, str] | None = None
) -> dict[str, float]:
    """One engine's sink in its own process (`env`: its environment, this one's if None)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(REPO / "bench" / "peers" / "sink_side.py"),
        name,
        bootstrap,
        prefix,
        str(RECORDS),
        str(folder),
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"the {name} sink failed ({process.returncode})")
    # faust may write terminal codes to stdout: take the line holding the result.
    line = next(line for line in reversed(out.decode().splitlines()) if '{"rate"' in line)
    result: dict[str, float] = json.loads(line[line.index("{") :])
    return result


async def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        broker = None
        if configured:
            bootstrap = configured
        else:
            broker = LocalBroker(find_kafka_libs(REPO), root / "kafka")
            bootstrap = broker.start()
        try:
            prefix = f"bench{int(time.time())}."
            settings = KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=prefix)
            await ensure_topics(settings, bootstrap)
            print(f"producing {RECORDS} predictions (20 features) ...", flush=True)
            await produce(settings, bootstrap)
            results = {}
            for name in ("aiokafka", "faust"):
                print(f"running the {name} sink ...", flush=True)
                results[name] = await run_side(name, bootstrap, prefix, root / name)
        finally:
            if broker is not None:
                broker.stop()
    ours, peer = results["aiokafka"], results["faust"]
    print()
    print(f"{'sink':<12}{'records/s':>12}{'CPU s / 100k':>14}{'rows in ClickHouse':>20}")
    for name, result in results.items():
        print(
            f"{name:<12}{result['rate']:>12,.0f}{result['cpu_per_100k']:>14.2f}"
            f"{int(result['rows']):>20,}"
        )
    print(f"\nthroughput ratio aiokafka engine / faust engine: {ours['rate'] / peer['rate']:.2f}x")
    for name, result in results.items():
        per_core = 100_000 / result["cpu_per_100k"]
        print(f"{name} engine: {per_core:,.0f} records per CPU-second")
    per_core = 100_000 / ours["cpu_per_100k"]
    verdict = "met" if per_core >= GOAL_PER_CPU_SECOND else "NOT met"
    print(
        f"goal: the default (aiokafka) sink, online detection on, >= {GOAL_PER_CPU_SECOND:,} "
        f"records per CPU-second: {per_core:,.0f}, {verdict} "
        f"({per_core / GOAL_PER_CPU_SECOND:.2f}x the goal)"
    )


if __name__ == "__main__":
    asyncio.run(main())
