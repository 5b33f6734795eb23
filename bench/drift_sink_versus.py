"""Benchmark: the drift sink (aiokafka engine, online detection on) of this checkout against
the code of another commit, in the same run, alternating, each side on its own freshly
produced topic of N predictions (bench/drift_sink.py's producer and side process).

    git worktree add /tmp/before <commit>
    .venv/bin/python bench/drift_sink_versus.py /tmp/before [ROUNDS]    (ROUNDS = 2)

The other commit's packages are put first on the side process's path (PYTHONPATH), so its
decoder, consumer, sink and detection run; the measuring harness is this checkout's.
BENCH_SINK_RECORDS sets N (default 200,000).
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
sys.path.insert(0, str(REPO / "bench"))

import drift_sink  # noqa: E402

from driftloop.kafka.local_broker import LocalBroker, find_kafka_libs  # noqa: E402
from driftloop.kafka.topics import ensure_topics  # noqa: E402
from driftloop.kit.settings import KafkaSettings  # noqa: E402


def packages(tree: Path) -> str:
    """A PYTHONPATH putting the workspace packages of `tree` first."""
    return os.pathsep.join(
        str(path) for group in ("libs", "services") for path in sorted((tree / group).iterdir())
    )


async def side(path: str, bootstrap: str, prefix: str, folder: Path) -> dict[str, float]:
    """The aiokafka sink with the packages of `path` first on its PYTHONPATH."""
    env = {**os.environ, "PYTHONPATH": path}
    return await drift_sink.run_side("aiokafka", bootstrap, prefix, folder, env)


async def main(other: Path, rounds: int) -> None:
    sides = {"this checkout": "", f"{other}": packages(other)}
    results: dict[str, list[dict[str, float]]] = {name: [] for name in sides}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        broker = LocalBroker(find_kafka_libs(REPO), root / "kafka")
        bootstrap = broker.start()
        try:
            for round_ in range(rounds):
                for index, (name, path) in enumerate(sides.items()):
                    prefix = f"versus{round_}x{index}x{int(time.time())}."
                    settings = KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=prefix)
                    await ensure_topics(settings, bootstrap)
                    await drift_sink.produce(settings, bootstrap, drift_sink.RECORDS)
                    result = await side(path, bootstrap, prefix, root / f"{round_}x{index}")
                    results[name].append(result)
                    print(f"{name}, round {round_ + 1}: {json.dumps(result)}", flush=True)
        finally:
            broker.stop()
    print()
    medians = {}
    for name, runs in results.items():
        per_cpu = sorted(100_000 / run["cpu_per_100k"] for run in runs)
        medians[name] = per_cpu[len(per_cpu) // 2]
        rows = ", ".join(f"{int(run['rows']):,}" for run in runs)
        rates = ", ".join(f"{run['rate']:,.0f}" for run in runs)
        cpu = ", ".join(f"{x:,.0f}" for x in per_cpu)
        print(f"{name}: records per CPU-second {cpu}; records/s {rates}; rows {rows}")
    ours, theirs = medians.values()
    print(f"this checkout / {other}, records per CPU-second (medians): {ours / theirs:.2f}x")


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 2))
