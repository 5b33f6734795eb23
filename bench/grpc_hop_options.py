"""What makes any grpc.aio hop cheaper: the bare forwarder with each variant against the
forwarder as it is, in front of the bare echo server, in alternating rounds.

    .venv/bin/python bench/grpc_hop_options.py [--rounds 3] [--requests 8000]

Processes: bench/peers/echo_side.py (a bare grpc.aio Predict of inference's shapes, the
upstream) and one bench/peers/forwarder_side.py per variant (the gateway's Predict shapes,
one call upstream per request over one channel), no Kafka and no driftloop service, so
only the hop is measured. Per variant and round: h2load at saturation (-c 1 -m 16) through
the forwarder, its rate and the forwarder's CPU per request (user + system, every thread,
from /proc), then p50 and p99 at a fixed open-loop rate (bench/gateway_vs_direct.py's
client). The figures that a shared machine disturbs least are the CPU per request and the
ratios to the plain forwarder in the same round.

A variant is a list of forwarder_side.py flags (VARIANTS below); `--uvloop` needs uvloop
importable: `--uvloop-path DIR` puts DIR on the forwarders' PYTHONPATH (e.g. a folder
from `uv pip install --target DIR uvloop`), and the uvloop variant is left out without it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
from pathlib import Path

from gateway_vs_direct import fixed_rate, percentile

from driftloop.kafka.local_broker import free_port
from driftloop.models.convert import row_to_proto
from driftloop.v1 import gateway_pb2
from harness import (
    cpu_seconds,
    framed,
    h2load,
    print_log_tails,
    start,
    stop_processes,
    wait_port,
)

REPO = Path(__file__).resolve().parent.parent
METHOD = "/driftloop.v1.Gateway/Predict"

VARIANTS: dict[str, list[str]] = {
    "plain": [],
    "kit options": [  # what driftloop's server kit and channels set
        "--server-option=grpc.so_reuseport=0",
        "--channel-option=grpc.lb_policy_name=round_robin",
    ],
    "throughput target": [
        "--server-option=grpc.optimization_target=throughput",
        "--channel-option=grpc.optimization_target=throughput",
    ],
    "latency target": [
        "--server-option=grpc.optimization_target=latency",
        "--channel-option=grpc.optimization_target=latency",
    ],
    "no retries, no keepalive pings": [
        "--channel-option=grpc.enable_retries=0",
        "--channel-option=grpc.keepalive_time_ms=2147483647",
        "--server-option=grpc.keepalive_time_ms=2147483647",
    ],
    "128 streams, 1 MB write buffer": [
        "--server-option=grpc.max_concurrent_streams=128",
        "--channel-option=grpc.http2.write_buffer_size=1048576",
        "--server-option=grpc.http2.write_buffer_size=1048576",
    ],
    "no BDP probe": [
        "--channel-option=grpc.http2.bdp_probe=0",
        "--server-option=grpc.http2.bdp_probe=0",
    ],
    "uvloop": ["--uvloop"],
}


async def main(args: argparse.Namespace, work: Path) -> int:
    """The benchmark, with the processes' logs and h2load's request body in `work`."""
    variants = {
        name: flags
        for name, flags in VARIANTS.items()
        if (not args.only or name in args.only) and ("--uvloop" not in flags or args.uvloop_path)
    }
    env = dict(os.environ)
    if args.uvloop_path:
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(args.uvloop_path), env.get("PYTHONPATH", "")) if p
        )
    echo_port = free_port()
    ports = {name: free_port() for name in variants}
    processes = [
        await start(
            [sys.executable, str(REPO / "bench/peers/echo_side.py"), str(echo_port)],
            env,
            work / "echo.log",
        )
    ]
    try:
        await wait_port(echo_port, processes[0], "echo")
        for n, (name, flags) in enumerate(variants.items()):
            command = [
                sys.executable,
                str(REPO / "bench/peers/forwarder_side.py"),
                str(ports[name]),
                f"127.0.0.1:{echo_port}",
                "1",
                *flags,
            ]
            processes.append(await start(command, env, work / f"forwarder-{n}.log"))
            await wait_port(ports[name], processes[-1], f"forwarder ({name})")
        pids = {name: processes[1 + n].pid for n, name in enumerate(variants)}
        row = row_to_proto({f"f{i}": 0.5 * i for i in range(20)})
        body = gateway_pb2.PredictRequest(
            model="bench", entity_key="user-1", row=row
        ).SerializeToString()
        (work / "body.bin").write_bytes(framed(body))
        for port in ports.values():  # warm-up
            await fixed_rate(f"127.0.0.1:{port}", METHOD, body, args.rate, 1)
        rate: dict[str, list[float]] = {name: [] for name in variants}
        cpu: dict[str, list[float]] = {name: [] for name in variants}
        latencies: dict[str, list[float]] = {name: [] for name in variants}
        for round_ in range(args.rounds):
            print(f"round {round_ + 1} of {args.rounds}", flush=True)
            for name, port in ports.items():
                before = cpu_seconds(pids[name])
                served, _ = h2load(port, METHOD, work / "body.bin", args.requests, 16)
                cpu[name].append((cpu_seconds(pids[name]) - before) / args.requests * 1e6)
                rate[name].append(served)
                latencies[name] += await fixed_rate(
                    f"127.0.0.1:{port}", METHOD, body, args.rate, args.seconds
                )
        plain_cpu = statistics.median(cpu["plain"])
        plain_rate = statistics.median(rate["plain"])
        print(
            f"\n| forwarder variant | CPU per request at saturation (median of {args.rounds}) "
            f"| vs plain | saturation | vs plain | p50 at {args.rate:g} req/s "
            f"| p99 at {args.rate:g} req/s |"
        )
        print("|---|---|---|---|---|---|---|")
        for name in variants:
            mid_cpu, mid_rate = statistics.median(cpu[name]), statistics.median(rate[name])
            print(
                f"| {name} | {mid_cpu:.0f} µs ({', '.join(f'{c:.0f}' for c in cpu[name])}) "
                f"| {mid_cpu / plain_cpu:.2f}x | {mid_rate:,.0f} req/s "
                f"| {mid_rate / plain_rate:.2f}x | {percentile(latencies[name], 50):.3f} ms "
                f"| {percentile(latencies[name], 99):.3f} ms |"
            )
        return 0
    except Exception:  # the logs go with `work`: their last lines say what failed
        forwarders = [work / f"forwarder-{n}.log" for n in range(len(variants))]
        print_log_tails([work / "echo.log", *forwarders])
        raise
    finally:
        await stop_processes(processes)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=8000, help="per saturation run")
    parser.add_argument("--rate", type=float, default=300.0)
    parser.add_argument("--seconds", type=float, default=3.0, help="per fixed-rate run")
    parser.add_argument("--uvloop-path", type=Path, metavar="DIR")
    parser.add_argument("--only", action="append", help="a variant's name (repeatable)")
    arguments = parser.parse_args()
    # The work folder (logs, the request body) is removed when the run ends, failed or
    # interrupted too.
    with tempfile.TemporaryDirectory(
        prefix="driftloop-bench-hop-", ignore_cleanup_errors=True
    ) as folder:
        code = asyncio.run(main(arguments, Path(folder)))
    sys.exit(code)
