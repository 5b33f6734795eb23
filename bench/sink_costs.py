"""The drift sink's cost per record, piece by piece, in process (CPU time, no broker): decode
(the drift sink's decoder, codecs.log_decoders, over a batch), the Arrow columns
(prediction_log.logged_table: the decoder's rows; prediction_table on older commits), online
detection (OnlineDetection.observe, 21 CUSUM streams and the label join) and the insert
into embedded ClickHouse, on N seeded PredictionEvents of 20 features.

    .venv/bin/python bench/sink_costs.py [N]          (N = 50000)

It runs against whichever driftloop code Python imports, so the code of another commit is
measured in the same run by putting its packages first on the path:

    git worktree add /tmp/before <commit>
    PYTHONPATH=$(ls -d /tmp/before/libs/*/ /tmp/before/services/*/ | tr '\\n' :) \\
        .venv/bin/python bench/sink_costs.py

(a commit from before the batch decoder is measured record by record, as it decoded).
"""

from __future__ import annotations

import asyncio
import inspect
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from driftloop.clickhouse import prediction_log  # noqa: E402
from driftloop.clickhouse.backend import EmbeddedBackend  # noqa: E402
from driftloop.clickhouse.client import ClickHouse  # noqa: E402
from driftloop.drift.alerts import Alerts  # noqa: E402
from driftloop.drift.baselines import VersionInfo  # noqa: E402
from driftloop.drift.detection import OnlineDetection  # noqa: E402
from driftloop.drift.labels import LabelJoin  # noqa: E402
from driftloop.drift.ordering import ReorderBuffer  # noqa: E402
from driftloop.kafka import codecs  # noqa: E402
from tests import drift_streams  # noqa: E402

RECORDS = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
PARTITIONS = 6


def decode(raws: Sequence[bytes]) -> list[Any]:
    """The drift sink's decoder of predictions (codecs.log_decoders) over the batch."""
    decoder = (
        codecs.log_decoders("predictions", "labels")["predictions"]
        if hasattr(codecs, "log_decoders")
        else codecs.decode_prediction
    )
    if hasattr(codecs, "decode_many"):
        return list(codecs.decode_many(decoder, raws))
    return [decoder(raw) for raw in raws]


def columns(events: Sequence[Any], raws: Sequence[bytes]) -> Any:
    """The sink's table of the decoded batch (logged_table: the decoder's rows)."""
    if hasattr(prediction_log, "logged_table"):
        return prediction_log.logged_table(events, raws)
    if "raws" in inspect.signature(prediction_log.prediction_table).parameters:
        return prediction_log.prediction_table(events, raws)
    return prediction_log.prediction_table(events)


class StaticBaselines:
    def __init__(self, info: VersionInfo) -> None:
        self._info = info

    async def get(self, model: str, version: str) -> VersionInfo:
        return self._info


async def nothing(*args: Any) -> None:
    return None


async def main() -> None:
    trained = drift_streams.train()
    data = drift_streams.table(RECORDS, seed=1)
    events = drift_streams.stream(trained, data, model="bench", version="1").predictions
    raws = [event.SerializeToString() for event in events]
    costs: dict[str, float] = {}
    columns(decode(raws[:50]), raws[:50])  # first use: imports, lazy set-up
    started = time.process_time()
    decoded = decode(raws)
    costs["decode"] = time.process_time() - started
    started = time.process_time()
    table = columns(decoded, raws)
    costs["columns"] = time.process_time() - started
    detection = OnlineDetection(
        StaticBaselines(VersionInfo("bench", "1", "binary", trained.baseline)),
        LabelJoin(86_400, 100_000),
        Alerts(nothing, 300),
        10_000_000,
        nothing,
        ReorderBuffer(1_000_000, 100_000, 10.0),
    )
    partitions = [row % PARTITIONS for row in range(RECORDS)]
    await detection.observe(table.slice(0, 10), [], partitions[:10], [])  # builds the monitor
    started = time.process_time()
    await detection.observe(table.slice(10), [], partitions[10:], [])
    costs["detection"] = time.process_time() - started
    with tempfile.TemporaryDirectory() as folder:
        backend = EmbeddedBackend(Path(folder))
        clickhouse = ClickHouse(backend, "bench")
        await clickhouse.apply_schema()
        log = prediction_log.PredictionLog(clickhouse)
        no_labels = prediction_log.label_table([])
        await log.write_tables(table.slice(0, 10), no_labels)
        started = time.process_time()
        await log.write_tables(table.slice(10), no_labels)
        costs["insert"] = time.process_time() - started
        backend.close()
    total = sum(costs.values())
    pieces = "  ".join(f"{name} {cost / RECORDS * 1e6:.2f}" for name, cost in costs.items())
    per_record = total / RECORDS * 1e6
    print(f"µs of CPU per record ({RECORDS:,} records): {pieces}  total {per_record:.2f}")
    print(
        f"these pieces alone: {RECORDS / total:,.0f} records per CPU-second "
        "(the sink also pays aiokafka's fetch and the consumer's own work)"
    )


if __name__ == "__main__":
    asyncio.run(main())
