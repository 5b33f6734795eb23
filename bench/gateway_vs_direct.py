"""Benchmark: the gateway hop (gateway -> inference) against calling inference directly.

    make bench-gateway

Broker, registry, inference and gateway run as their own processes; the model is a
20-feature linear model. Measured, alternating between the two paths:
- added latency at a fixed open-loop rate (--rate req/s for --seconds): p50 and p99 of a
  pre-encoded request sent on a schedule (not when the previous answer arrives), by a
  Python client that sends raw bytes (its own cost is in both paths alike);
- saturation throughput with h2load (-c 1 -m 16), as for the inference benchmark;
- shadow mirroring at 100% against no shadow, at the same fixed rate and at saturation:
  live p99 ratio (at saturation from h2load's per-request log).
Goals (issue 14): p50 <= direct + 0.4 ms, p99 <= direct + 1.5 ms, saturation >= 0.5x
direct, shadow-on p99 <= 1.1x shadow-off.

The ceiling is measured in the same alternating rounds, as a third path: a bare grpc.aio
forwarder (bench/peers/forwarder_side.py: the gateway's Predict shapes, one unary Predict
call to the same inference service per request over one persistent channel, nothing
else). Its hop is what any Python grpc.aio hop costs on this machine; the summary gives
the gateway's hop and saturation as a share of it.

--profile DIR samples the gateway and inference processes with py-spy (as root: it needs
ptrace) during the first fixed-rate run and the first saturation run through the gateway,
and the bare forwarder during its own first runs, writes the raw stacks to DIR and prints
each process's top frames by own and by inclusive time. Sampling disturbs the figures of
that run a little (py-spy runs --nonblocking and competes for the same cores).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import psutil

from driftloop.kafka.local_broker import LocalBroker, find_kafka_libs, free_port
from driftloop.models.convert import OUTPUT_KINDS, row_to_proto, schema_to_proto
from driftloop.models.linear import LinearModel, Preprocessing
from driftloop.models.schema import Feature, Schema
from driftloop.v1 import common_pb2, events_pb2, gateway_pb2, inference_pb2, registry_pb2
from harness import (
    framed,
    h2load,
    print_log_tails,
    stack_client,
    stack_env,
    start,
    start_stack,
    stop_all,
    wait_port,
    wait_stack,
)

REPO = Path(__file__).resolve().parent.parent
TOKEN = "bench-token"
FEATURES = 20


async def fixed_rate(
    target: str, method: str, body: bytes, rate: float, seconds: float, strict: bool = True
) -> list[float]:
    """Latencies (ms) of requests sent on a fixed schedule, open loop; failed requests
    raise, or when not `strict` (a profiled run: sampling pauses the process) are told."""
    async with grpc.aio.insecure_channel(target) as channel:
        call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(method)
        latencies: list[float] = []
        failures = 0

        async def one() -> None:
            nonlocal failures
            started = time.perf_counter()
            try:
                await call(body, timeout=5)
            except grpc.aio.AioRpcError:
                failures += 1
                return
            latencies.append((time.perf_counter() - started) * 1000)

        tasks = []
        begin = time.perf_counter()
        for n in range(int(rate * seconds)):
            delay = begin + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
        if failures and strict:
            raise RuntimeError(f"{failures} requests to {method} failed")
        if failures:
            print(f"{failures} requests to {method} failed (profiled: their latency left out)")
        return latencies


@contextlib.asynccontextmanager
async def sampled(
    out: Path | None, phase: str, pids: dict[str, int], native: bool = False
) -> AsyncIterator[None]:
    """py-spy records each named process while the block runs (nothing when `out` is None);
    on exit, each process's top frames are printed. Without `native` the processes are not
    paused to be sampled (--nonblocking); with it they are, and C frames (grpc's Cython,
    protobuf) show."""
    if out is None:
        yield
        return
    mode = ["--native"] if native else ["--nonblocking"]
    rate = 50 if native else 200  # a native sample pauses the process: at 200 Hz, calls time out
    spies = {}
    for name, pid in pids.items():
        raw = out / f"{name}-{phase}.txt"
        spies[name] = (
            raw,
            await asyncio.create_subprocess_exec(
                str(Path(sys.executable).with_name("py-spy")),  # the environment's
                "record",
                "--pid",
                str(pid),
                "--rate",
                str(rate),
                "--format",
                "raw",
                "--function",
                *mode,
                "--output",
                str(raw),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            ),
        )
    await asyncio.sleep(1)  # py-spy attaches
    try:
        yield
    finally:
        for _, spy in spies.values():
            if spy.returncode is None:
                spy.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C
        for name, (raw, spy) in spies.items():
            _, error = await spy.communicate()
            if raw.exists():
                print_top(raw, f"{name}, {phase}")
            else:
                print(f"\npy-spy recorded nothing for {name} ({phase}): {error.decode().strip()}")


# Where a sample's time goes, by the first frame from the leaf up that names a component
# (C frames of libc, the interpreter and asyncio's C module run on behalf of their caller).
# Without --native, grpc's Cython coroutines are invisible: their time shows as asyncio's
# Handle._run.
COMPONENTS = (
    ("aiokafka", "aiokafka"),
    ("cygrpc", "grpc core and Cython"),
    ("grpc/", "grpc.aio (Python)"),
    ("_message", "protobuf (upb)"),
    ("driftloop", "driftloop code"),
    ("gateway/", "driftloop code"),
    ("kit/", "driftloop code"),
    ("client/", "driftloop code"),
    ("kafka/", "driftloop code"),
    ("prometheus_client", "prometheus_client"),
    ("forwarder_side", "the forwarder's own code"),
    ("asyncio", "asyncio loop"),
    ("selectors", "asyncio loop"),
    ("threading", "other threads"),
)


def component(frames: list[str]) -> str:
    """The component a stack's leaf time belongs to (see COMPONENTS)."""
    if frames[-1].startswith(("epoll_wait", "EpollSelector.select")):
        return "idle"
    for frame in reversed(frames):
        for mark, name in COMPONENTS:
            if mark in frame:
                return name
    return "other"


def print_top(raw: Path, title: str, n: int = 12) -> None:
    """The busy samples of a py-spy raw file ("frame;frame;leaf count" per line) by
    component, and the top frames by own samples (the leaf) and by inclusive samples
    (anywhere on the stack, once per stack). Waiting in epoll is idle, not counted."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    parts: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        frames = stack.split(";")
        part = component(frames)
        parts[part] += int(count)
        if part == "idle":
            continue
        own[frames[-1]] += int(count)
        for frame in set(frames):
            inclusive[frame] += int(count)
    total = sum(parts.values()) - parts.pop("idle", 0)
    print(f"\n{title}: {total} busy samples ({raw})")
    print(
        "  "
        + ", ".join(f"{name} {100 * k / max(total, 1):.0f}%" for name, k in parts.most_common())
    )
    for label, counter in (("own", own), ("inclusive", inclusive)):
        print(f"  top by {label} time (frames on 90% of stacks or more left out):")
        shown = [(f, k) for f, k in counter.most_common() if k < 0.9 * total][:n]
        for frame, samples in shown:
            print(f"    {100 * samples / max(total, 1):5.1f}%  {frame}")


def print_ceiling(
    rate: float,
    latency: dict[str, list[float]],
    saturation: dict[str, float],
    cpu: dict[str, dict[str, float]],
) -> None:
    """The gateway beside the bare grpc.aio forwarder (the ceiling of any Python hop),
    each against direct, and the gateway as a share of the ceiling."""
    d50, d99 = percentile(latency["direct"], 50), percentile(latency["direct"], 99)
    hops = {
        name: (percentile(latency[name], 50) - d50, percentile(latency[name], 99) - d99)
        for name in ("forwarder", "gateway")
    }
    share = {name: saturation[name] / saturation["direct"] for name in hops}
    print(
        "\nThe ceiling: a bare grpc.aio forwarder (bench/peers/forwarder_side.py) in the same "
        "rounds\n"
    )
    print("| measure | bare forwarder | gateway | gateway / forwarder | goal |")
    print("|---|---|---|---|---|")
    for label, n, goal in ((f"p50 hop at {rate:g} req/s", 0, "+0.4 ms"), ("p99 hop", 1, "+1.5 ms")):
        forwarder, gateway = hops["forwarder"][n], hops["gateway"][n]
        # A hop at or below zero is noise (a busy machine); no ratio is made of it.
        ratio = f"{gateway / forwarder:.2f}x" if forwarder > 0 and gateway > 0 else "-"
        print(f"| {label} | {forwarder:+.3f} ms | {gateway:+.3f} ms | {ratio} | <= {goal} |")
    print(
        f"| saturation vs direct | {share['forwarder']:.2f}x "
        f"({saturation['forwarder']:,.0f} req/s) | {share['gateway']:.2f}x "
        f"({saturation['gateway']:,.0f} req/s) | {share['gateway'] / share['forwarder']:.2f}x "
        "| >= 0.5x |"
    )
    forwarder_cpu, gateway_cpu = cpu["forwarder"]["forwarder"], cpu["gateway"]["gateway"]
    print(
        f"| hop process CPU per request at saturation | {forwarder_cpu * 1e6:.0f} µs "
        f"| {gateway_cpu * 1e6:.0f} µs | {gateway_cpu / forwarder_cpu:.2f}x | |"
    )
    print(
        f"| inference CPU per request behind it | {cpu['forwarder']['inference'] * 1e6:.0f} µs "
        f"| {cpu['gateway']['inference'] * 1e6:.0f} µs | | |"
    )
    missed = [
        goal
        for goal, met in (
            ("p50 hop", hops["forwarder"][0] <= 0.4),
            ("p99 hop", hops["forwarder"][1] <= 1.5),
            ("saturation", share["forwarder"] >= 0.5),
        )
        if not met
    ]
    print(
        "\nGoals the bare forwarder itself misses in this run (out of reach of a Python "
        f"grpc.aio hop on this machine): {', '.join(missed) or 'none'}"
    )


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """User plus system CPU seconds each named process has spent so far."""
    times = {name: psutil.Process(pid).cpu_times() for name, pid in pids.items()}
    return {name: t.user + t.system for name, t in times.items()}


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


async def main(args: argparse.Namespace, work: Path) -> int:
    """The benchmark, with the broker's and the processes' state and logs in `work`."""
    if shutil.which("h2load") is None:
        print("run `make bench-gateway` (it installs h2load)")
        return 2
    broker = LocalBroker(find_kafka_libs(REPO), work / "kafka")
    print("[1/4] starting Kafka, the registry, inference and the gateway", flush=True)
    await asyncio.to_thread(broker.start)
    registry_port, inference_port, gateway_port = free_port(), free_port(), free_port()
    env = stack_env(
        broker.bootstrap_servers, work, TOKEN, registry_port, inference_port, gateway_port
    )
    # The figures in docs/benchmarks.md were measured with coalescing on (2 calls in
    # flight per version); the gateway's default is off. Set the variable to 0 to compare.
    env.setdefault("DRIFTLOOP_GATEWAY_INFERENCE_CALLS_IN_FLIGHT", "2")
    if args.gateway_uvloop:  # the gateway alone on uvloop (bench/peers/uvloop_site)
        env["PYTHONPATH"] = os.pathsep.join(
            p
            for p in (
                str(REPO / "bench/peers/uvloop_site"),
                str(args.gateway_uvloop),
                env.get("PYTHONPATH", ""),
            )
            if p
        )
    processes = await start_stack(env, work)
    try:
        await wait_stack(processes, registry_port, inference_port, gateway_port)
        names = [f"f{i}" for i in range(FEATURES)]
        schema = Schema(tuple(Feature(name, "number") for name in names))
        rng = np.random.default_rng(3)
        model = LinearModel(
            schema,
            "binary",
            Preprocessing(tuple((n, 0.0, 1.0) for n in names), ()),
            rng.normal(size=(1, FEATURES)),
            np.zeros(1),
            ("0", "1"),
        )
        client = stack_client(TOKEN, registry_port, inference_port, gateway_port)
        digest = await client.upload_artifact(model.to_bytes())
        version = (
            await client.register(
                registry_pb2.ModelVersion(
                    model="bench",
                    flavor="linear",
                    artifact_sha256=digest,
                    schema=schema_to_proto(schema),
                    output_kind=OUTPUT_KINDS["binary"],
                )
            )
        ).version
        policy = await client.set_routing_policy(
            events_pb2.RoutingPolicy(model="bench", stable_version=version), 0
        )
        row = row_to_proto(dict(zip(names, rng.normal(size=FEATURES).tolist(), strict=True)))
        direct_body = inference_pb2.InferenceRequest(
            model=common_pb2.ModelRef(model="bench", version=version), row=row
        ).SerializeToString()
        gateway_body = gateway_pb2.PredictRequest(
            model="bench", entity_key="user-1", row=row
        ).SerializeToString()
        (work / "direct.bin").write_bytes(framed(direct_body))
        (work / "gateway.bin").write_bytes(framed(gateway_body))
        paths = {
            "direct": (
                f"127.0.0.1:{inference_port}",
                "/driftloop.v1.InferenceService/Predict",
                direct_body,
                inference_port,
                work / "direct.bin",
            ),
            "gateway": (
                f"127.0.0.1:{gateway_port}",
                "/driftloop.v1.Gateway/Predict",
                gateway_body,
                gateway_port,
                work / "gateway.bin",
            ),
        }
        forwarder_port = free_port()
        processes.append(
            await start(
                [
                    sys.executable,
                    str(REPO / "bench/peers/forwarder_side.py"),
                    str(forwarder_port),
                    f"127.0.0.1:{inference_port}",
                    version,
                ],
                env,
                work / "forwarder.log",
            )
        )
        await wait_port(forwarder_port, processes[-1], "bare forwarder")
        paths["forwarder"] = (
            f"127.0.0.1:{forwarder_port}",
            "/driftloop.v1.Gateway/Predict",
            gateway_body,
            forwarder_port,
            work / "gateway.bin",
        )
        print("[2/4] warming up", flush=True)
        for target, method, body, _, _ in paths.values():
            await fixed_rate(target, method, body, args.rate, 2)
        latency: dict[str, list[float]] = {name: [] for name in paths}
        print(
            f"[3/4] fixed rate {args.rate:g} req/s, {args.seconds:g} s per run, "
            f"{args.repeat} runs per path",
            flush=True,
        )
        pids = {"gateway": processes[2].pid, "inference": processes[1].pid}
        assert broker.pid is not None
        # CPU is counted for the JVM too
        counted = {**pids, "broker": broker.pid, "forwarder": processes[-1].pid}
        # What --profile samples on each path's first runs.
        profiled = {"gateway": pids, "forwarder": {"forwarder": processes[-1].pid}}
        for run in range(args.repeat):
            for name, (target, method, body, _, _) in paths.items():
                profile = args.profile if run == 0 and name in profiled else None
                async with sampled(
                    profile, f"rate{args.rate:g}", profiled.get(name, {}), args.native
                ):
                    latency[name] += await fixed_rate(
                        target, method, body, args.rate, args.seconds, strict=profile is None
                    )
        saturation = {name: 0.0 for name in paths}
        # CPU seconds each process spent per request at saturation, by path: a figure that
        # a busy machine disturbs far less than a rate.
        cpu: dict[str, dict[str, float]] = {name: {} for name in paths}
        for run in range(args.repeat):
            for name, (_, method, _, port, file) in paths.items():
                profile = args.profile if run == 0 and name in profiled else None
                async with sampled(profile, "saturation", profiled.get(name, {}), args.native):
                    before = cpu_seconds(counted)
                    rate, _ = h2load(port, method, file, args.requests, 16)
                    after = cpu_seconds(counted)
                saturation[name] = max(saturation[name], rate)
                for who in counted:
                    spent = (after[who] - before[who]) / args.requests
                    cpu[name][who] = min(cpu[name].get(who, spent), spent)
        print(
            "[4/4] shadow at 100% against no shadow (gateway, fixed rate, saturation)", flush=True
        )
        shadow_off: list[float] = []
        shadow_on: list[float] = []
        saturated_off: list[float] = []
        saturated_on: list[float] = []
        target, method, body, port, file = paths["gateway"]
        for _ in range(args.repeat):
            shadow_off += await fixed_rate(target, method, body, args.rate, args.seconds)
            h2load(port, method, file, args.requests, 16, saturated_off)
            policy.shadow.CopyFrom(events_pb2.ShadowPlan(versions=[version], sample_bp=10_000))
            policy = await client.set_routing_policy(policy, policy.revision)
            shadow_on += await fixed_rate(target, method, body, args.rate, args.seconds)
            h2load(port, method, file, args.requests, 16, saturated_on)
            policy.ClearField("shadow")
            policy = await client.set_routing_policy(policy, policy.revision)
        await client.close()

        d50, d99 = percentile(latency["direct"], 50), percentile(latency["direct"], 99)
        g50, g99 = percentile(latency["gateway"], 50), percentile(latency["gateway"], 99)
        off99, on99 = percentile(shadow_off, 99), percentile(shadow_on, 99)
        sat_off99, sat_on99 = percentile(saturated_off, 99), percentile(saturated_on, 99)
        print(
            "\n| measure | direct to inference | through the gateway | difference / ratio | goal |"
        )
        print("|---|---|---|---|---|")
        print(
            f"| p50 at {args.rate:g} req/s | {d50:.3f} ms | {g50:.3f} ms "
            f"| {g50 - d50:+.3f} ms | <= +0.4 ms |"
        )
        print(
            f"| p99 at {args.rate:g} req/s | {d99:.3f} ms | {g99:.3f} ms "
            f"| {g99 - d99:+.3f} ms | <= +1.5 ms |"
        )
        print(
            f"| saturation (16 in flight) | {saturation['direct']:,.0f} req/s "
            f"| {saturation['gateway']:,.0f} req/s "
            f"| {saturation['gateway'] / saturation['direct']:.2f}x | >= 0.5x |"
        )
        print(
            f"| gateway p99, shadow 100% vs off | {off99:.3f} ms (off) | {on99:.3f} ms (on) "
            f"| {on99 / off99:.2f}x | <= 1.1x |"
        )
        print(
            f"| gateway p99 at saturation, shadow 100% vs off | {sat_off99:.3f} ms (off) "
            f"| {sat_on99:.3f} ms (on) | {sat_on99 / sat_off99:.2f}x | <= 1.1x |"
        )
        print(
            "\nCPU per request at saturation (microseconds): "
            f"direct: inference {cpu['direct']['inference'] * 1e6:.0f}; "
            f"through the gateway: gateway {cpu['gateway']['gateway'] * 1e6:.0f} "
            f"+ inference {cpu['gateway']['inference'] * 1e6:.0f} "
            f"+ Kafka broker {cpu['gateway']['broker'] * 1e6:.0f}"
        )
        print(
            f"mean latency: direct {statistics.fmean(latency['direct']):.3f} ms, "
            f"gateway {statistics.fmean(latency['gateway']):.3f} ms; "
            f"samples per path: {len(latency['direct'])}"
        )
        print_ceiling(args.rate, latency, saturation, cpu)
        if args.gateway_uvloop:
            print("The gateway ran on uvloop; the forwarder and inference on asyncio's loop.")
        return 0
    except Exception:  # the logs go with `work`: their last lines say what failed
        logs = ("retrainer", "inference", "gateway", "forwarder")
        print_log_tails(work / f"{name}.log" for name in logs)
        raise
    finally:
        await stop_all(processes, broker)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rate", type=float, default=300.0, help="requests per second of the fixed-rate runs"
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--requests", type=int, default=20_000, help="requests per saturation run")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="record py-spy profiles of the gateway and inference (and of the bare forwarder) "
        "into DIR and print the top frames (each path's first run at the fixed rate and at "
        "saturation)",
    )
    parser.add_argument(
        "--native",
        action="store_true",
        help="with --profile: C frames too (py-spy pauses the processes to sample them)",
    )
    parser.add_argument(
        "--gateway-uvloop",
        type=Path,
        metavar="DIR",
        help="run the gateway process (alone: the forwarder and inference stay on asyncio's "
        "loop) on uvloop, importable from DIR (`uv pip install --target DIR uvloop`); "
        "uvloop is no dependency of driftloop",
    )
    arguments = parser.parse_args()
    if arguments.profile:
        arguments.profile.mkdir(parents=True, exist_ok=True)
    # The work folder (broker, chDB, artifacts, logs: tens of MB a run) is removed when
    # the run ends, failed or interrupted too; --profile writes to its own DIR.
    with tempfile.TemporaryDirectory(
        prefix="driftloop-bench-gateway-", ignore_cleanup_errors=True
    ) as folder:
        code = asyncio.run(main(arguments, Path(folder)))
    sys.exit(code)
