"""One side of the sink benchmark, in its own process: the drift service's sink (LogSink:
decode, Arrow tables, one ClickHouse insert per table, online detection) driven by the
`aiokafka` engine (BatchConsumer, the default) or the `faust` engine (a faust-streaming
agent taking event batches, FaustSink): the same work, two drivers.

    python bench/peers/sink_side.py aiokafka|faust BOOTSTRAP PREFIX RECORDS FOLDER

Prints one JSON line: rate (records/s from the end of the first batch to the last
insert), cpu_per_100k (process CPU seconds per 100k records over the same span: the first
batch, carrying the start-up costs, is not counted) and rows (count in ClickHouse, FINAL).
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from driftloop.clickhouse.backend import EmbeddedBackend  # noqa: E402
from driftloop.clickhouse.client import ClickHouse  # noqa: E402
from driftloop.clickhouse.prediction_log import PredictionLog  # noqa: E402
from driftloop.drift.alerts import Alerts  # noqa: E402
from driftloop.drift.baselines import VersionInfo  # noqa: E402
from driftloop.drift.detection import OnlineDetection  # noqa: E402
from driftloop.drift.faust_sink import FaustSink  # noqa: E402
from driftloop.drift.labels import LabelJoin  # noqa: E402
from driftloop.drift.ordering import ReorderBuffer  # noqa: E402
from driftloop.drift.sink import LogSink  # noqa: E402
from driftloop.kafka import codecs  # noqa: E402
from driftloop.kafka.codecs import Decoder, decode_label, decode_prediction  # noqa: E402
from driftloop.kafka.consumer import BatchConsumer, Record  # noqa: E402
from driftloop.kafka.dead_letter import DeadLetters  # noqa: E402
from driftloop.kafka.producer import EventProducer  # noqa: E402
from driftloop.kafka.topics import TopicNames  # noqa: E402
from driftloop.kit.settings import KafkaSettings  # noqa: E402
from tests import drift_streams  # noqa: E402


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Progress:
    def __init__(self, records: int) -> None:
        self.records = records
        self.seen = 0
        self.first: float | None = None
        self.cpu_first = 0.0
        self.counted_from = 0
        self.done = asyncio.Event()

    def batch(self, size: int) -> None:
        self.seen += size
        if self.first is None:
            # The clocks start after the first batch, which is not counted: it carries the
            # start-up costs (imports on first use, the consumer joining its group).
            self.first = time.perf_counter()
            self.cpu_first = cpu_seconds()
            self.counted_from = self.seen
        if self.seen >= self.records:
            self.done.set()

    def result(self, rows: int) -> dict[str, float]:
        assert self.first is not None
        elapsed = time.perf_counter() - self.first
        counted = self.seen - self.counted_from
        if not counted:
            raise SystemExit("every record came in the first batch: raise BENCH_SINK_RECORDS")
        return {
            "rate": counted / elapsed,
            "cpu_per_100k": (cpu_seconds() - self.cpu_first) / counted * 100_000,
            "rows": rows,
        }


class StaticBaselines:
    def __init__(self) -> None:
        trained = drift_streams.train()
        self._info = VersionInfo("bench", "1", "binary", trained.baseline)

    async def get(self, model: str, version: str) -> VersionInfo:
        return self._info


async def count(clickhouse: ClickHouse) -> int:
    result = await clickhouse.query(f"SELECT count() FROM {clickhouse.table('predictions')} FINAL")
    return int(result.scalar())


def log_sink(clickhouse: ClickHouse) -> LogSink:
    """The drift service's sink with online detection (alerts and alarms go nowhere)."""

    async def no_alerts(alert: Any) -> None:
        return None

    async def no_record(*args: Any) -> None:
        return None

    detection = OnlineDetection(
        StaticBaselines(),
        LabelJoin(86_400, 100_000),
        Alerts(no_alerts, 300),
        10_000_000,
        no_record,
        ReorderBuffer(1_000_000, 100_000, 10.0),
    )
    return LogSink(PredictionLog(clickhouse), detection)


async def run_sink(
    engine: str, bootstrap: str, prefix: str, records: int, clickhouse: ClickHouse
) -> dict[str, float]:
    """The drift service's sink (LogSink with online detection) driven by `engine`."""
    settings = KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=prefix)
    names = TopicNames(prefix)
    producer = EventProducer(settings, bootstrap)
    await producer.start()
    progress = Progress(records)

    sink = log_sink(clickhouse)

    async def handler(batch: Sequence[Record]) -> None:
        await sink(batch)
        progress.batch(len(batch))

    # The drift service's decoders (codecs.log_decoders); spelled out for a commit older
    # than it: bench/drift_sink_versus.py runs this side on older commits' packages too.
    decoders: dict[str, Decoder] = (
        codecs.log_decoders(names.predictions, names.labels)
        if hasattr(codecs, "log_decoders")
        else {names.predictions: decode_prediction, names.labels: decode_label}
    )
    dead_letters = DeadLetters(producer, names.dead_letter, "bench")
    consumer: BatchConsumer | FaustSink
    if engine == "faust":
        consumer = FaustSink(
            settings,
            f"{prefix}bench-faust",
            bootstrap,
            decoders=decoders,
            handler=handler,
            dead_letters=dead_letters,
            max_batch=50_000,
        )
    else:
        consumer = BatchConsumer(
            settings,
            bootstrap,
            group_id=f"{prefix}bench-aiokafka",
            decoders=decoders,
            handler=handler,
            dead_letters=dead_letters,
            max_batch=50_000,
            max_partition_fetch_bytes=8 * 1024 * 1024,
            fetch_max_bytes=64 * 1024 * 1024,
        )
    await consumer.start()
    task = asyncio.create_task(consumer.run())
    await progress.done.wait()
    result = progress.result(await count(clickhouse))
    await consumer.stop()
    await task
    await producer.stop()
    return result


def main() -> None:
    engine, bootstrap, prefix, records, folder = sys.argv[1:6]
    backend = EmbeddedBackend(Path(folder))
    clickhouse = ClickHouse(backend, "bench")

    async def run() -> dict[str, float]:
        await clickhouse.apply_schema()
        return await run_sink(engine, bootstrap, prefix, int(records), clickhouse)

    print(json.dumps(asyncio.run(run())), flush=True)
    backend.close()


if __name__ == "__main__":
    main()
