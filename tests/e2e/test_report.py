"""`driftloop report` as a user runs it, on the data of a real closed loop, and the page it
writes opened in headless Chromium.

The loop scenario of the demo at a smaller scale runs on the standalone composition
(tests/standalone.py: the real broker, the session's embedded ClickHouse, the five
services in this process; chDB allows one process per data folder, so the services cannot
be processes of their own here): drift, alerts, a retraining run through the gate, a
canary that promotes; then a canary of the old version, rolled back by hand. The CLI runs
as its own process with the environment `driftloop up` prints, and writes the page; it
needs no Kafka (the rollouts come from the drift service's model events). Chromium opens
the page from disk and the test reads what it rendered over the DevTools protocol. The screenshot is
kept in the test's temporary folder (its path is printed).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from driftloop.cli.demo import OVERRIDES
from driftloop.cli.loop import MODEL, Scenario, first_champion, run_loop
from driftloop.cli.report_page import SECTIONS
from driftloop.cli.up import exports
from driftloop.clickhouse.client import ClickHouse
from driftloop.kit.settings import KafkaSettings
from tests.browser import open_page
from tests.standalone import standalone

# The demo's settings; an inference call may take longer than a second on a shared CI host
# (the traffic would fail; latency is not what this test is about).
LOADED_HOST = {**OVERRIDES, "gateway": {**OVERRIDES["gateway"], "request_timeout_s": 10}}
# What the page rendered, per section: its height, "no data" and "could not be read"
# notes, each chart's size and line count, each table row's cells.
RENDERED = """
(() => {
  const sections = {};
  for (const s of document.querySelectorAll('section')) {
    sections[s.id] = {
      height: s.getBoundingClientRect().height,
      empty: s.querySelectorAll('p.empty').length,
      missing: [...s.querySelectorAll('p.missing')].map(p => p.textContent),
      charts: [...s.querySelectorAll('svg.chart')].map(svg => ({
        width: svg.getBoundingClientRect().width,
        height: svg.getBoundingClientRect().height,
        lines: svg.querySelectorAll('polyline').length,
      })),
      rows: [...s.querySelectorAll('tbody tr')].map(tr => [...tr.cells].map(c => c.textContent)),
    };
  }
  return {
    title: document.title,
    meta: document.querySelector('p.meta').textContent,
    scripts: document.scripts.length,
    sections,
  };
})()
"""


async def live_predictions(clickhouse: ClickHouse) -> int:
    result = await clickhouse.query(
        f"SELECT count() FROM {clickhouse.table('predictions')} FINAL "
        "WHERE model = {model:String} AND role = 'live'",
        {"model": MODEL},
    )
    return int(result.scalar() or 0)


async def settled_count(clickhouse: ClickHouse, at_least: int) -> int:
    """The live predictions stored, once the sink has stored at least `at_least`."""
    deadline = time.monotonic() + 60
    while (count := await live_predictions(clickhouse)) < at_least:
        assert time.monotonic() < deadline, f"{count} of {at_least} predictions stored"
        await asyncio.sleep(0.2)
    return count


async def stored_events(clickhouse: ClickHouse, kind: str) -> None:
    """Once the drift service has stored a model event of this kind (the report reads them
    from there)."""
    deadline = time.monotonic() + 60
    sql = (
        f"SELECT count() FROM {clickhouse.table('model_events')} FINAL "
        "WHERE model = {model:String} AND kind = {kind:String}"
    )
    while not (await clickhouse.query(sql, {"model": MODEL, "kind": kind})).scalar():
        assert time.monotonic() < deadline, f"no {kind} event stored"
        await asyncio.sleep(0.2)


async def run_report(env: dict[str, str], out: Path) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "driftloop.cli",
        "report",
        "--model",
        MODEL,
        "--out",
        str(out),
        "--hours",
        "1",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


@pytest.mark.timeout(300)
async def test_the_report_of_a_closed_loop_renders_every_section_in_a_browser(
    kafka_settings: KafkaSettings, clickhouse: ClickHouse, tmp_path: Path
) -> None:
    bootstrap = kafka_settings.bootstrap_servers
    assert bootstrap is not None
    async with standalone(
        kafka_settings, clickhouse, tmp_path, secrets.token_urlsafe(16), LOADED_HOST
    ) as stack:
        services, client = stack.services, stack.client
        first = await first_champion(services, client, tmp_path / "train.csv", seed=7)
        result = await run_loop(
            services,
            client,
            stack.producer,
            stack.names,
            clickhouse,
            first.version,
            Scenario(change_after=2000, settle_s=2, timeout_s=150),
        )
        assert result.champion != result.first_champion, "the loop promoted a new champion"
        # The old version as a canary, rolled back by hand.
        await client.start_rollout(
            MODEL, result.first_champion, "canary", reason="one more look at v1"
        )
        await client.rollback(MODEL, reason="v1 stays retired")
        stored = await settled_count(clickhouse, result.requests)
        await stored_events(clickhouse, "rolled_back")

        # The environment `driftloop up` tells a user to export.
        env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLOOP_")}
        for line in exports(services.ports, bootstrap, kafka_settings.topic_prefix):
            name, value = line.removeprefix("export ").split("=", 1)
            env[name] = value
        out = tmp_path / "report" / "demo-churn.html"
        # The services are all it reads: no Kafka in its environment.
        code, stdout, stderr = await run_report(
            {k: v for k, v in env.items() if "KAFKA" not in k}, out
        )

    assert code == 0, (stdout, stderr)
    assert stderr == "", "every source was read"
    assert stdout.strip() == f"report written to {out.resolve()}"
    screenshot = tmp_path / "report.png"
    opened = await open_page(out, RENDERED, screenshot, tmp_path / "chromium")
    print(f"report: {out}\nscreenshot: {screenshot}")

    assert opened.errors == [], "no script error, console error or failed load"
    assert opened.requests == [out.resolve().as_uri()], "the page fetched nothing but itself"
    page: dict[str, Any] = opened.value
    assert page["scripts"] == 0
    assert page["title"] == f"driftloop report: {MODEL}"
    assert f"champion now v{result.champion}" in page["meta"]
    sections = page["sections"]
    assert list(sections) == list(SECTIONS), json.dumps(page)
    for key, section in sections.items():
        assert section["height"] > 0 and section["missing"] == [], (key, section)
        assert all(c["width"] > 500 and c["height"] > 100 for c in section["charts"]), key

    traffic = sections["traffic"]
    assert traffic["empty"] == 0 and traffic["charts"][0]["lines"] >= 2, "a line per version"
    served = {row[0]: int(row[1].replace(",", "")) for row in traffic["rows"]}
    assert {f"v{result.first_champion}", f"v{result.champion}"} <= set(served)
    assert sum(served.values()) == stored, "every live request the log holds, counted once"

    drift = sections["drift"]
    assert drift["empty"] == 0, "PSI windows and alerts"
    assert len(drift["charts"]) >= 4, "tenure, monthly_charges, plan and the output"
    assert any(row[2] in ("data", "concept") for row in drift["rows"]), drift["rows"]

    quality = sections["quality"]
    assert quality["empty"] == 0 and len(quality["charts"]) == 2, "accuracy and coverage"
    assert all(chart["lines"] >= 1 for chart in quality["charts"])

    events = [row[1] for row in sections["rollouts"]["rows"]]
    for kind in ("rollout started", "canary step", "promoted", "champion moved", "rolled back"):
        assert kind in events, events
    assert events.index("promoted") < events.index("rolled back")

    promoted_run = [
        row for row in sections["retraining"]["rows"] if row[4].endswith(f"v{result.champion}")
    ]
    assert promoted_run, sections["retraining"]["rows"]
    assert promoted_run[0][3] == "succeeded" and promoted_run[0][6].startswith("passed: ")
    assert screenshot.stat().st_size > 10_000
