"""The README's main command, `driftloop demo`, run as a user runs it: the closed loop.

A seeded stream whose input-label relation changes at a known point, labels arriving
5 s after their predictions, and no call from anyone after the stream starts: the drift
service must alert, the retrainer trigger, validate, train, gate and register, the
gateway ramp a canary and promote. Afterwards the demo's ClickHouse folder is opened
and the loop's records are checked: the champion's alias history, the retraining run
that produced the new champion, and the accuracy of the old and new champions on the
labelled traffic after the change.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

from driftloop.clickhouse.backend import EmbeddedBackend


async def test_the_demo_closes_the_loop_with_no_person_in_it(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    folder = tmp_path / "clickhouse"
    # The configured database already holds someone's data: the demo must leave it alone.
    await asyncio.to_thread(keep_data, folder)
    env = {
        **os.environ,
        "DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "DRIFTLOOP_CLICKHOUSE_PATH": str(folder),
        "DRIFTLOOP_CLICKHOUSE_DATABASE": KEPT_DATABASE,
    }
    env.pop("DRIFTLOOP_CLICKHOUSE_URL", None)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "driftloop.cli",
        "demo",
        "--change-after",
        "3000",
        "--data-dir",
        str(tmp_path / "demo"),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), 280)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    text = output.decode()
    assert process.returncode == 0, text
    assert "[6/6] The loop closed: v1 -> v" in text, text
    assert re.search(r"drift service: (data|concept) drift alert on v1", text), text
    assert re.search(r"retrainer: (drift|performance) trigger -> run ", text), text
    assert re.search(r"gateway: canary of v\d+ at 100% \(step 3/3\)", text), text
    seconds = re.search(r"change -> promotion: ([\d.]+) s, unattended", text)
    assert seconds is not None, text
    assert float(seconds.group(1)) < 5 + 60, "label delay + 60 s"
    report = re.search(r"report: (\S+\.html) ", text)
    assert report is not None, text
    page = await asyncio.to_thread(Path(report.group(1)).read_text)  # see test_report.py
    assert "<h1>driftloop report: " in page
    assert "no data in this window" not in page and "could not be read" not in page
    database = re.search(r"database '(\w+)' created for this run", text)
    assert database is not None, text
    await asyncio.to_thread(check_records, folder, database.group(1), text)


KEPT_DATABASE = "driftloop"


def keep_data(folder: Path) -> None:
    backend = EmbeddedBackend(folder)
    try:
        backend.command(f"CREATE DATABASE {KEPT_DATABASE}")
        backend.command(
            f"CREATE TABLE {KEPT_DATABASE}.kept (n UInt8) ENGINE = MergeTree ORDER BY n"
        )
        backend.command(f"INSERT INTO {KEPT_DATABASE}.kept VALUES (7)")
    finally:
        backend.close()


def check_records(folder: Path, database: str, text: str) -> None:
    backend = EmbeddedBackend(folder)
    try:
        assert database.startswith(f"{KEPT_DATABASE}_demo_"), database
        kept = backend.query(f"SELECT n FROM {KEPT_DATABASE}.kept").rows
        assert kept == [(7,)], "the demo touched the configured database"
        moves = backend.query(
            f"SELECT version, actor, reason FROM {database}.alias_history FINAL "
            "WHERE model = 'demo-churn' AND alias = 'champion' ORDER BY seq"
        ).rows
        assert moves[0][:2] == ("1", "demo"), moves
        champion, actor, reason = moves[-1]
        assert champion != "1" and actor == "gateway", moves
        # The reason may carry notes after it (an early step on labelled evidence, the
        # labelled rows counted): the promotion itself is what the demo must show.
        assert reason.split(";")[0] == "canary passed every step", reason
        runs = backend.query(
            f"SELECT run_id, trigger, state, parent_version, rollout_outcome "
            f"FROM {database}.retrain_runs FINAL WHERE new_version = {{v:String}}",
            {"v": champion},
        ).rows
        assert len(runs) == 1, runs
        _, trigger, state, parent, outcome = runs[0]
        # Any trigger of the policy, none by a person (after a refused first run, the next
        # one can be started by the new labelled data as well as by the drift).
        assert trigger in ("drift", "performance", "new data") and state == "succeeded"
        assert outcome == "promoted"
        steps = backend.query(
            f"SELECT step, state FROM {database}.retrain_steps FINAL "
            "WHERE run_id = {r:String} ORDER BY ordinal",
            {"r": runs[0][0]},
        ).rows
        assert [step for step, _ in steps] == [
            "extract",
            "validate",
            "train",
            "evaluate",
            "gate",
            "register",
            "rollout",
        ]
        assert {state for _, state in steps} == {"succeeded"}
        accuracy = dict(
            re.findall(r"v(\d+) \([a-z ]+\): accuracy ([\d.]+) on [\d,]+ labelled", text)
        )
        assert float(accuracy[champion]) > float(accuracy["1"]) + 0.05, accuracy
        assert parent in accuracy, "the champion's parent served too"
    finally:
        backend.close()
