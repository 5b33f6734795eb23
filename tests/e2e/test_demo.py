"""The README's main command, `driftloop demo`, run as a user runs it."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path


async def test_the_demo_serves_logs_and_stores_end_to_end(
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
    assert "[8/8] Windows read back from ClickHouse" in text
    assert "registered version 1, alias champion -> 1" in text
    produced = re.search(r"Served 3,000 predictions .*?, with ([\d,]+) delayed labels", text)
    assert produced is not None, text
    labels = int(produced[1].replace(",", ""))
    assert f"3,000 predictions, {labels:>6,} labels in ClickHouse, 3 dead letters" in text
    rows = re.findall(r"^\s+\d\d:\d\d\s+([\d,]+)\s+([\d,]+)\s+([\d.]+)", text, re.MULTILINE)
    assert len(rows) == 6
    assert sum(int(row[0].replace(",", "")) for row in rows) == 3000
    assert sum(int(row[1].replace(",", "")) for row in rows) == labels
    tenure = [float(row[2]) for row in rows]
    assert max(tenure[3:]) < 0.75 * min(tenure[:3])  # the seeded shift shows in the windows
