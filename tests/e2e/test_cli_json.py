"""Every CLI command that answers, with --json, against a running `driftloop up`: exit
status 0 and stdout that is JSON and nothing else (what a script pipes into jq)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from driftloop.kafka.local_broker import free_port
from tests.e2e.test_up import SERVICES, start_up
from tests.retrain_data import MODEL, population, rows_of
from tests.unit.test_cli import LEAVES

FOREGROUND = {"up", "kafka", "demo"}


async def run_json(env: dict[str, str], *args: str) -> Any:
    """`driftloop ARGS --json`: exit status 0 and the whole of stdout parsed as JSON."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "driftloop.cli",
        *args,
        "--json",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, (args, out.decode(), err.decode())
    try:
        return json.loads(out)
    except json.JSONDecodeError as error:
        raise AssertionError(
            f"{args}: stdout is not JSON alone ({error}):\n{out.decode()}"
        ) from None


def write_csv(path: Path, seed: int) -> None:
    table = population(seed, 1500)
    names = list(table.columns)
    lines = [",".join(names)]
    lists = {name: table.columns[name].tolist() for name in names}
    lines += [",".join(str(lists[n][i]) for n in names) for i in range(table.rows)]
    path.write_text("\n".join(lines) + "\n")


async def test_every_command_prints_json_and_nothing_else(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DRIFTLOOP_", "KAFKA_BOOT"))}
    env |= {f"DRIFTLOOP_{service}_PORT": str(free_port()) for service in SERVICES}
    env["DRIFTLOOP_ADMIN_TOKEN"] = "json-test-token"
    up = await start_up(tmp_path / "data", env, free_port())
    ran: set[tuple[str, ...]] = set()

    async def cli(*args: str) -> Any:
        words = tuple(a for a in args[:3] if not a.startswith("-"))
        ran.update(leaf for leaf, _ in LEAVES if words[: len(leaf)] == leaf)
        return await run_json(shell, *args)

    try:
        shell = env | dict(re.findall(r"export (DRIFTLOOP_\w+)=(\S+)", up.output))
        shell["DRIFTLOOP_ACTOR"] = "json-test"
        shell["DRIFTLOOP_CLICKHOUSE_PATH"] = str(tmp_path / "data" / "clickhouse")
        for seed in (1, 2):
            write_csv(tmp_path / f"train{seed}.csv", seed)
        registered = await cli(
            "models", "register", "--model", MODEL, "--data", str(tmp_path / "train1.csv"),
            "--target", "churned", "--alias", "champion",
        )  # fmt: skip
        assert registered["version"]["version"] == "1"
        assert registered["alias_move"]["alias"] == "champion"
        second = await cli(
            "models", "register", "--model", MODEL, "--data", str(tmp_path / "train2.csv"),
            "--target", "churned", "--parent", "1", "--tag", "team=risk",
        )  # fmt: skip
        assert second["version"]["tags"] == {"team": "risk"} and second["alias_move"] is None
        listed = await cli("models", "list", "--model", MODEL)
        assert [v["version"] for v in listed["versions"]] == ["1", "2"]
        shown = await cli("models", "show", "--model", MODEL, "--version", "2")
        assert shown["lineage"] == ["2", "1"]
        move = await cli("models", "alias", "--model", MODEL, "--alias", "next", "--version", "2")
        assert move["version"] == "2"
        history = await cli("models", "history", "--model", MODEL)
        assert {m["alias"] for m in history["moves"]} == {"champion", "next"}
        now = dt.datetime.now(dt.UTC).isoformat()
        at = await cli("models", "history", "--model", MODEL, "--at", now)
        assert at["aliases"] == {"champion": "1", "next": "2"}

        policy = await cli("routing", "set", "--model", MODEL, "--stable", "1")
        assert policy["stable_version"] == "1"
        assert (await cli("routing", "show", "--model", MODEL))["revision"] == policy["revision"]
        row = rows_of(population(3, 1))[0]
        served = await cli("predict", "--model", MODEL, "--row", json.dumps(row))
        assert served["version"] == "1" and served["request_id"]
        rows = tmp_path / "rows.jsonl"
        rows.write_text("\n".join(json.dumps(r) for r in rows_of(population(4, 5))) + "\n")
        batch = await cli("predict", "--model", MODEL, "--rows", str(rows))
        assert len(batch) == 5 and all(answer["version"] == "1" for answer in batch)
        direct = await cli("predict", "--direct", "--model", MODEL, "--version", "2", "--row",
                           json.dumps(row))  # fmt: skip
        assert direct["model"]["version"] == "2"
        rollout = await cli(
            "routing", "rollout", "--model", MODEL, "--candidate", "2",
            "--strategy", "blue-green", "--hold-s", "600",
        )  # fmt: skip
        assert rollout["model"] == MODEL
        assert (await cli("routing", "rollback", "--model", MODEL))["stable_version"] == "1"
        await cli("routing", "rollout", "--model", MODEL, "--candidate", "2",
                  "--strategy", "blue-green", "--hold-s", "600")  # fmt: skip
        assert (await cli("routing", "promote", "--model", MODEL))["stable_version"] == "2"

        report = await cli("drift", "report", "--model", MODEL, "--version", "1", "--last", "10")
        assert report["model"]["version"] == "1"
        assert (await cli("drift", "baseline", "--model", MODEL, "--version", "1"))["numeric"]
        assert "alerts" in await cli("drift", "alerts", "--model", MODEL)
        canary = await cli("drift", "canary", "--model", MODEL, "--stable", "1", "--candidate", "2")
        assert isinstance(canary, dict)
        evaluated = await cli(
            "drift", "evaluate", "--data", str(tmp_path / "train1.csv"), "--reference-rows",
            "500", "--inject", "feature=x1,kind=shift,size=1,onset=500",
        )  # fmt: skip
        assert evaluated["evaluations"][0]["outcomes"][0]["detected"] is True

        assert (await cli("retrain", "policy", "get", MODEL))["model"] == MODEL
        changed = await cli("retrain", "policy", "set", MODEL, "--min-rows", "100")
        assert changed["revision"] != "0"
        run = await cli("retrain", "trigger", MODEL, "--reason", "json test")
        assert (await cli("retrain", "show", run["run_id"]))["run_id"] == run["run_id"]
        assert run["run_id"] in {r["run_id"] for r in (await cli("retrain", "runs", MODEL))["runs"]}
        assert "decisions" in await cli("retrain", "decisions", MODEL)

        assert isinstance(await cli("shadow", "status"), dict)
        assert isinstance(await cli("shadow", "compare", MODEL, "2"), dict)
        assert isinstance(await cli("ab", "report", MODEL), dict)

        status = await cli("status")
        assert {s["health"] for s in status["services"].values()} == {"serving"}
        one = await cli("status", "--service", "gateway")
        assert one["services"]["gateway"]["health"] == "serving"
        assert isinstance(await cli("settings"), list)
        assert "created" in await cli("topics")
        assert (await cli("schema", "print"))["statements"]
        written = await cli("report", "--model", MODEL, "--out", str(tmp_path / "r.html"))
        assert await asyncio.to_thread(Path(written["path"]).is_file)
    finally:
        assert await up.stop() == 0, up.output
    everything = {leaf for leaf, _ in LEAVES if leaf[0] not in FOREGROUND}
    assert everything - ran == set(), "commands the test did not run with --json"
    # schema apply writes to ClickHouse: run against the stopped stack's folder
    applied = await run_json(shell, "schema", "apply")
    assert applied["applied"] is True
