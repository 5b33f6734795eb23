"""Benchmark: the gateway hop (gateway -> inference) against calling inference directly.

    make bench-gateway

Broker, registry, inference and gateway run as their own processes; the model is a
20-feature linear model. Measured, alternating between the two paths:
- added latency at a fixed open-loop rate (--rate req/s for --seconds): p50 and p99 of a
  pre-encoded request sent on a schedule (not when the previous answer arrives), by a
  Python client that sends raw bytes (its own cost is in both paths alike);
- saturation throughput with h2load (-c 1 -m 16), as for the inference benchmark;
- shadow mirroring at 100% against no shadow, at the same fixed rate: live p99 ratio.
Goals (peers.md): p50 <= direct + 0.4 ms, p99 <= direct + 1.5 ms, saturation >= 0.5x
direct, shadow-on p99 <= 1.1x shadow-off.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np

from driftloop.client import ClientSettings, DriftloopClient
from driftloop.kafka.local_broker import LocalBroker, find_kafka_libs, free_port
from driftloop.models.convert import OUTPUT_KINDS, row_to_proto, schema_to_proto
from driftloop.models.linear import LinearModel, Preprocessing
from driftloop.models.schema import Feature, Schema
from driftloop.v1 import common_pb2, events_pb2, gateway_pb2, inference_pb2, registry_pb2
from harness import framed, h2load, start, stop_all, wait_port

REPO = Path(__file__).resolve().parent.parent
TOKEN = "bench-token"
FEATURES = 20


async def fixed_rate(
    target: str, method: str, body: bytes, rate: float, seconds: float
) -> list[float]:
    """Latencies (ms) of requests sent on a fixed schedule, open loop."""
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
        if failures:
            raise RuntimeError(f"{failures} requests to {method} failed")
        return latencies


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


async def main(args: argparse.Namespace) -> int:
    if shutil.which("h2load") is None:
        print("run `make bench-gateway` (it installs h2load)")
        return 2
    work = Path(tempfile.mkdtemp(prefix="driftloop-bench-gateway-"))
    broker = LocalBroker(find_kafka_libs(REPO), work / "kafka")
    print("[1/4] starting Kafka, the registry, inference and the gateway", flush=True)
    await asyncio.to_thread(broker.start)
    registry_port, inference_port, gateway_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "DRIFTLOOP_CLICKHOUSE_PATH": str(work / "clickhouse"),
        "DRIFTLOOP_ARTIFACTS_PATH": str(work / "artifacts"),
        "DRIFTLOOP_ADMIN_TOKEN": TOKEN,
        "DRIFTLOOP_RETRAINER_PORT": str(registry_port),
        "DRIFTLOOP_INFERENCE_PORT": str(inference_port),
        "DRIFTLOOP_GATEWAY_PORT": str(gateway_port),
        "DRIFTLOOP_INFERENCE_REGISTRY_TARGET": f"127.0.0.1:{registry_port}",
        "DRIFTLOOP_GATEWAY_INFERENCE_TARGETS": f"127.0.0.1:{inference_port}",
        "DRIFTLOOP_GATEWAY_REGISTRY_TARGET": f"127.0.0.1:{registry_port}",
        "DRIFTLOOP_LOG_LEVEL": "WARNING",
    }
    processes = [
        await start([sys.executable, "-m", f"driftloop.{name}"], env, work / f"{name}.log")
        for name in ("retrainer", "inference", "gateway")
    ]
    try:
        for port, process, name in zip(
            (registry_port, inference_port, gateway_port),
            processes,
            ("registry", "inference", "gateway"),
            strict=True,
        ):
            await wait_port(port, process, name)
        await asyncio.sleep(2)  # the gateway replays the routing topic before it serves
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
        client = DriftloopClient(
            ClientSettings(
                registry_target=f"127.0.0.1:{registry_port}",
                inference_target=f"127.0.0.1:{inference_port}",
                gateway_target=f"127.0.0.1:{gateway_port}",
                admin_token=TOKEN,  # type: ignore[arg-type]
            )
        )
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
        print("[2/4] warming up", flush=True)
        for target, method, body, _, _ in paths.values():
            await fixed_rate(target, method, body, args.rate, 2)
        latency: dict[str, list[float]] = {"direct": [], "gateway": []}
        print(
            f"[3/4] fixed rate {args.rate:g} req/s, {args.seconds:g} s per run, "
            f"{args.repeat} runs per path",
            flush=True,
        )
        for _ in range(args.repeat):
            for name, (target, method, body, _, _) in paths.items():
                latency[name] += await fixed_rate(target, method, body, args.rate, args.seconds)
        saturation = {name: 0.0 for name in paths}
        for _ in range(args.repeat):
            for name, (_, method, _, port, file) in paths.items():
                saturation[name] = max(
                    saturation[name], h2load(port, method, file, args.requests, 16)[0]
                )
        print("[4/4] shadow at 100% against no shadow (gateway, fixed rate)", flush=True)
        shadow_off: list[float] = []
        shadow_on: list[float] = []
        target, method, body, _, _ = paths["gateway"]
        for _ in range(args.repeat):
            shadow_off += await fixed_rate(target, method, body, args.rate, args.seconds)
            policy.shadow.CopyFrom(events_pb2.ShadowPlan(versions=[version], sample_bp=10_000))
            policy = await client.set_routing_policy(policy, policy.revision)
            shadow_on += await fixed_rate(target, method, body, args.rate, args.seconds)
            policy.ClearField("shadow")
            policy = await client.set_routing_policy(policy, policy.revision)
        await client.close()

        d50, d99 = percentile(latency["direct"], 50), percentile(latency["direct"], 99)
        g50, g99 = percentile(latency["gateway"], 50), percentile(latency["gateway"], 99)
        off99, on99 = percentile(shadow_off, 99), percentile(shadow_on, 99)
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
            f"\nmean latency: direct {statistics.fmean(latency['direct']):.3f} ms, "
            f"gateway {statistics.fmean(latency['gateway']):.3f} ms; "
            f"samples per path: {len(latency['direct'])}"
        )
        return 0
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
    sys.exit(asyncio.run(main(parser.parse_args())))
