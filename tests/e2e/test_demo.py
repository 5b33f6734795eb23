"""The README's main command, `driftloop demo`, run as a user runs it."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path


async def test_the_demo_serves_logs_detects_and_stores_end_to_end(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "DRIFTLOOP_CLICKHOUSE_PATH": str(tmp_path / "clickhouse"),
    }
    env.pop("DRIFTLOOP_CLICKHOUSE_URL", None)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "driftloop.cli",
        "demo",
        "--predictions",
        "3000",
        "--data-dir",
        str(tmp_path / "demo"),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), 180)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    text = output.decode()
    assert process.returncode == 0, text
    assert "[10/10] Windows read back from ClickHouse" in text
    # The drift service saw the tenure shift in v1's traffic, online and in its window.
    assert re.search(r"v1: 1,000 rows \([\d,]+ labelled\): drift data", text), text
    assert re.search(r"^\s+tenure\s+PSI\s+[\d.]+\s+ks p\s+\S+\s+drifted", text, re.M), text
    assert "alert v1 data warning: tenure (cusum" in text
    assert re.search(r"v2: [\d,]+ rows \([\d,]+ labelled\): drift none", text), text
    assert "canary promoted: the gateway serves v2, registry champion is v2" in text
    logged = re.search(
        r"\(([\d,]+) predictions logged by the gateway, 0 dropped; ([\d,]+) delayed", text
    )
    assert logged is not None, text
    predictions, labels = (int(group.replace(",", "")) for group in logged.groups())
    assert predictions >= 3000
    assert (
        f"{predictions:>7,} predictions, {labels:>6,} labels in ClickHouse, 3 dead letters" in text
    )
    rows = re.findall(
        r"^\s+\d\d:\d\d:\d\d\s+([\d,]+)\s+([\d,]+)\s+([\d.]+)\s+[\d.]+\s+\S+\s+(\S+)$",
        text,
        re.MULTILINE,
    )
    assert rows, text
    assert sum(int(row[0].replace(",", "")) for row in rows) == predictions
    assert sum(int(row[1].replace(",", "")) for row in rows) == labels
    assert rows[0][3].startswith("v1") and "v2" in rows[-1][3]
    tenure = [float(row[2]) for row in rows]
    assert min(tenure) < 0.75 * max(tenure)  # the seeded tenure shift shows
