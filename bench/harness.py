"""Shared pieces of the benchmarks: gRPC framing, h2load runs, process start-up, the
served linear model."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from driftloop.client import ClientSettings, DriftloopClient
from driftloop.kafka.local_broker import LocalBroker
from driftloop.kit.healthcheck import SERVING, health
from driftloop.models.linear import LinearModel, Preprocessing
from driftloop.models.schema import Feature, Schema


def plain_linear(names: Sequence[str], coef: Sequence[float], intercept: float) -> LinearModel:
    """A binary linear-flavor model over number features taken as they come (no scaling):
    scikit-learn's LogisticRegression coefficients as driftloop serves them."""
    return LinearModel(
        Schema(tuple(Feature(name, "number") for name in names)),
        "binary",
        Preprocessing(tuple((name, 0.0, 1.0) for name in names), ()),
        np.asarray([coef]),
        np.asarray([intercept]),
        ("0", "1"),
    )


def framed(message: bytes) -> bytes:
    return b"\0" + len(message).to_bytes(4, "big") + message


def h2load(
    port: int,
    path: str,
    body: Path,
    requests: int,
    in_flight: int,
    latencies: list[float] | None = None,
) -> tuple[float, float]:
    """(requests per second, mean latency in ms) from one h2load run; `latencies`, when
    given, receives each request's latency in ms (from h2load's per-request log)."""
    log_file = body.with_suffix(".h2load.log")
    out = subprocess.run(
        [
            "h2load",
            *(["--log-file", str(log_file)] if latencies is not None else []),
            "-n",
            str(requests),
            "-c",
            "1",
            "-m",
            str(in_flight),
            "-H",
            "content-type: application/grpc",
            "-H",
            "te: trailers",
            "-d",
            str(body),
            f"http://127.0.0.1:{port}{path}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    ).stdout
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
    if done is None or done[1] != str(requests) or done[2] != str(requests):
        raise RuntimeError(f"h2load did not complete every request:\n{out}")
    rate = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    latency = re.search(
        r"time for request:\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)", out
    )
    assert rate is not None and latency is not None, out
    mean = float(latency[5]) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[latency[6]]
    if latencies is not None:
        lines = log_file.read_text().splitlines()
        latencies += [int(line.split("\t")[2]) / 1000 for line in lines]
        log_file.unlink()
    return float(rate[1]), mean


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, every thread) used so far by a process and its descendants,
    from /proc: what a server spent, whoever else shares the machine's cores."""
    ticks = os.sysconf("SC_CLK_TCK")
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except FileNotFoundError:  # it exited meanwhile
            continue
    return total


async def start(command: list[str], env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    handle = log.open("wb")
    return await asyncio.create_subprocess_exec(
        *command, env=env, stdout=handle, stderr=subprocess.STDOUT
    )


async def wait_port(port: int, process: asyncio.subprocess.Process, what: str) -> None:
    deadline = time.monotonic() + 120
    while True:
        if process.returncode is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not open port {port}") from None
            await asyncio.sleep(0.2)


async def wait_serving(port: int, process: asyncio.subprocess.Process, what: str) -> None:
    """Wait until a driftloop service answers its health check with SERVING: while it waits
    for its own dependencies its port is open but answers health checks only."""
    await wait_port(port, process, what)
    deadline = time.monotonic() + 120
    while (state := await health(f"127.0.0.1:{port}")) != SERVING:
        if process.returncode is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} is still {state} on port {port}")
        await asyncio.sleep(0.2)


def stack_env(
    bootstrap: str, work: Path, token: str, registry: int, inference: int, gateway: int
) -> dict[str, str]:
    """The environment of a registry, an inference service and a gateway run as their own
    processes on these ports, with their state in `work`."""
    return {
        **os.environ,
        "DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "DRIFTLOOP_CLICKHOUSE_PATH": str(work / "clickhouse"),
        "DRIFTLOOP_ARTIFACTS_PATH": str(work / "artifacts"),
        "DRIFTLOOP_ADMIN_TOKEN": token,
        "DRIFTLOOP_RETRAINER_PORT": str(registry),
        "DRIFTLOOP_INFERENCE_PORT": str(inference),
        "DRIFTLOOP_GATEWAY_PORT": str(gateway),
        "DRIFTLOOP_INFERENCE_REGISTRY_TARGET": f"127.0.0.1:{registry}",
        "DRIFTLOOP_GATEWAY_INFERENCE_TARGETS": f"127.0.0.1:{inference}",
        "DRIFTLOOP_GATEWAY_REGISTRY_TARGET": f"127.0.0.1:{registry}",
        "DRIFTLOOP_LOG_LEVEL": "WARNING",
    }


async def start_stack(env: dict[str, str], logs: Path) -> list[asyncio.subprocess.Process]:
    """The registry (in the retrainer), inference and the gateway as their own processes,
    in that order, each logging to `logs`/<name>.log (`stack_env` gives the environment)."""
    return [
        await start([sys.executable, "-m", f"driftloop.{name}"], env, logs / f"{name}.log")
        for name in ("retrainer", "inference", "gateway")
    ]


async def wait_stack(
    processes: list[asyncio.subprocess.Process], registry: int, inference: int, gateway: int
) -> None:
    """Wait until each process of `start_stack` answers SERVING on its port."""
    ports = (registry, inference, gateway)
    for port, process, name in zip(
        ports, processes, ("registry", "inference", "gateway"), strict=True
    ):
        await wait_serving(port, process, name)


def stack_client(token: str, registry: int, inference: int, gateway: int) -> DriftloopClient:
    """The driftloop client of a `start_stack` stack on these ports, with its admin token."""
    return DriftloopClient(
        ClientSettings(
            registry_target=f"127.0.0.1:{registry}",
            inference_target=f"127.0.0.1:{inference}",
            gateway_target=f"127.0.0.1:{gateway}",
            admin_token=token,  # type: ignore[arg-type]  # pydantic makes the SecretStr
        )
    )


async def stop_processes(processes: list[asyncio.subprocess.Process]) -> None:
    """Terminate each process still running; kill what has not exited within 30 s."""
    for process in processes:
        if process.returncode is None:
            process.terminate()
    for process in processes:
        try:
            await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            process.kill()
            await process.wait()


def print_log_tails(logs: Iterable[Path], lines: int = 5) -> None:
    """Print the last lines of each of these logs that exists and is not empty to stderr: a
    benchmark's logs live in its work folder, which is removed when the run ends, failed
    runs included."""
    for log in logs:
        if log.exists() and (tail := log.read_text(errors="replace").splitlines()[-lines:]):
            print(f"[{log.name}, last lines]", *tail, sep="\n  ", file=sys.stderr)


async def stop_all(processes: list[asyncio.subprocess.Process], broker: LocalBroker) -> None:
    """Terminate the benchmark's processes (kill what does not exit), stop the broker."""
    await stop_processes(processes)
    await asyncio.to_thread(broker.stop)
