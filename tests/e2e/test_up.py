"""`driftloop up` as a user runs it: a local broker, embedded ClickHouse in a folder that
persists, the five services; the client, the CLI and a label producer work against it;
Ctrl-C leaves no process behind; a second `up` finds its data."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import time
from pathlib import Path

from pydantic import SecretStr

from driftloop.client import ClientSettings, DriftloopClient
from driftloop.kafka.local_broker import free_port
from driftloop.kafka.producer import EventProducer
from driftloop.kafka.topics import TopicNames
from driftloop.kit.settings import KafkaSettings
from driftloop.models.training import TrainingSpec, train_linear
from driftloop.v1 import events_pb2
from tests.retrain_data import MODEL, population, rows_of

SERVICES = ("GATEWAY", "INFERENCE", "DRIFT", "SHADOW", "RETRAINER")


class Up:
    """A running `driftloop up`, its output read as it comes."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.output = ""

    async def read_until(self, text: str, seconds: float = 120) -> None:
        assert self.process.stdout is not None
        deadline = time.monotonic() + seconds
        while text not in self.output:
            assert time.monotonic() < deadline, self.output
            line = await asyncio.wait_for(self.process.stdout.readline(), seconds)
            assert line, f"`up` exited:\n{self.output}"
            self.output += line.decode()

    async def stop(self) -> int:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGINT)
            rest, _ = await asyncio.wait_for(self.process.communicate(), 90)
            self.output += rest.decode()
        assert self.process.returncode is not None
        return self.process.returncode


async def start_up(data_dir: Path, env: dict[str, str], kafka_port: int) -> Up:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "driftloop.cli",
        "up",
        "--data-dir",
        str(data_dir),
        "--kafka-port",
        str(kafka_port),
        "--controller-port",
        str(free_port()),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    up = Up(process)
    await up.read_until("Ctrl-C stops everything.")
    return up


async def run_cli(env: dict[str, str], *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "driftloop.cli",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, output.decode()


async def test_up_serves_the_client_cli_and_label_producers_and_keeps_its_data(
    tmp_path: Path,
) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DRIFTLOOP_", "KAFKA_BOOTSTRAP"))
    }
    ports = {service: free_port() for service in SERVICES}
    env |= {f"DRIFTLOOP_{service}_PORT": str(port) for service, port in ports.items()}
    env["DRIFTLOOP_ADMIN_TOKEN"] = "up-test-token"
    kafka_port = free_port()
    up = await start_up(tmp_path / "data", env, kafka_port)
    try:
        exports = dict(re.findall(r"export (DRIFTLOOP_\w+)=(\S+)", up.output))
        assert exports["DRIFTLOOP_GATEWAY_TARGET"] == f"127.0.0.1:{ports['GATEWAY']}"
        assert exports["DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS"] == f"127.0.0.1:{kafka_port}"
        shell = env | exports
        settings = ClientSettings(
            registry_target=exports["DRIFTLOOP_REGISTRY_TARGET"],
            inference_target=exports["DRIFTLOOP_INFERENCE_TARGET"],
            gateway_target=exports["DRIFTLOOP_GATEWAY_TARGET"],
            drift_target=exports["DRIFTLOOP_DRIFT_TARGET"],
            shadow_target=exports["DRIFTLOOP_SHADOW_TARGET"],
            admin_token=SecretStr("up-test-token"),
            actor="tester",
        )
        async with DriftloopClient(settings) as client:
            trained = train_linear(population(1, 2000), TrainingSpec(target="churned"))
            v1 = await client.register_trained(MODEL, trained, source="test")
            await client.set_alias(MODEL, "champion", v1.version, reason="first")
            await client.set_routing_policy(
                events_pb2.RoutingPolicy(model=MODEL, stable_version=v1.version), 0
            )
            served = [await client.serve(MODEL, row) for row in rows_of(population(2, 50))]
            assert {response.version for response in served} == {v1.version}
            # A label producer publishes the truth for each served prediction.
            kafka = KafkaSettings(bootstrap_servers=exports["DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS"])
            producer = EventProducer(kafka, exports["DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS"])
            await producer.start()
            try:
                for response in served:
                    await producer.publish(
                        TopicNames(kafka.topic_prefix).labels,
                        response.request_id,
                        events_pb2.LabelEvent(request_id=response.request_id, label="1"),
                    )
            finally:
                await producer.stop()
            deadline = time.monotonic() + 60
            while True:
                report = await client.drift_report(MODEL, v1.version, last_n=100)
                if report.rows == 50 and report.labelled_rows == 50:
                    break
                assert time.monotonic() < deadline, report
                await asyncio.sleep(0.5)
        code, out = await run_cli(shell, "status")
        assert code == 0, out
        assert out.count("serving") == 5 and "up at 127.0.0.1" in out, out
        code, out = await run_cli(shell, "status", "--json")
        lag = json.loads(out)["lag"]
        prefix = exports.get("DRIFTLOOP_KAFKA_TOPIC_PREFIX", "driftloop.")
        sink = lag[f"{prefix}drift-sink"]  # everything served is stored: at most a batch left
        assert sink[f"{prefix}predictions"] is not None and sink[f"{prefix}predictions"] <= 50
        assert sink[f"{prefix}labels"] is not None and sink[f"{prefix}labels"] <= 50
        code, out = await run_cli(shell, "status", "--service", "gateway")
        assert code == 0 and out.strip().endswith("serving"), out
        code, out = await run_cli(shell, "models", "list", "--model", MODEL)
        assert code == 0 and "champion" in out and "linear" in out, out
    finally:
        assert await up.stop() == 0, up.output
    assert "stopped." in up.output
    code, out = await run_cli(env | exports, "status")
    assert code == 2 and "down" in out, out
    code, out = await run_cli(env | exports, "status", "--service", "inference")
    assert code == 2 and "down" in out, out
    # A second `up` on the same folder finds the model, its policy and its prediction log.
    up = await start_up(tmp_path / "data", env, kafka_port)
    try:
        async with DriftloopClient(settings) as client:
            versions = await client.list_versions(MODEL)
            assert [v.version for v in versions] == [v1.version]
            policy = await client.routing_policy(MODEL)
            assert policy.stable_version == v1.version
            response = await client.serve(MODEL, rows_of(population(3, 1))[0])
            assert response.version == v1.version
            report = await client.drift_report(MODEL, v1.version, last_n=100)
            assert report.rows >= 50
    finally:
        assert await up.stop() == 0, up.output
