"""Benchmark: driftloop's inference service against MLServer 1.7, same model, same load.

    make bench-inference          (sets up bench/.venv-peers and h2load first)

A seeded 20-feature binary dataset; scikit-learn's LogisticRegression fitted on it and
served by MLServer (mlserver-sklearn, parallel_workers=0, predict_proba); the very same
coefficients served by driftloop's inference service as a linear-flavor artifact
registered in driftloop's registry. Each server runs in its own process; h2load sends a
pre-encoded gRPC request (so the client's own cost is not counted): serially
(-c 1 -m 1) and with 16 in flight (-c 1 -m 16), the two servers alternating, best of
--repeat runs. Both answers are checked to agree before any load is sent. Prints the
figures and the ratios (goal: >= 2.5x MLServer's throughput, <= 0.5x its serial latency).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from driftloop.client import ClientSettings, DriftloopClient
from driftloop.kafka.local_broker import LocalBroker, find_kafka_libs, free_port
from driftloop.models.convert import OUTPUT_KINDS, row_to_proto, schema_to_proto
from driftloop.models.linear import LinearModel, Preprocessing
from driftloop.models.schema import Feature, Schema
from driftloop.v1 import common_pb2, inference_pb2, registry_pb2
from harness import framed, h2load, start, stop_all, wait_port

REPO = Path(__file__).resolve().parent.parent
PEER_PYTHON = REPO / "bench" / ".venv-peers" / "bin" / "python"
FEATURES = 20
TOKEN = "bench-token"


def write_dataset(work: Path, rows: int = 5000, seed: int = 11) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, FEATURES))
    weights = rng.normal(size=FEATURES)
    y = (rng.random(rows) < 1 / (1 + np.exp(-(x @ weights)))).astype(float)
    header = ",".join([f"f{i}" for i in range(FEATURES)] + ["label"])
    np.savetxt(
        work / "train.csv", np.column_stack([x, y]), delimiter=",", header=header, comments=""
    )


async def main(args: argparse.Namespace) -> int:
    if not PEER_PYTHON.exists() or shutil.which("h2load") is None:
        print("run `make bench-inference` (it installs MLServer in bench/.venv-peers and h2load)")
        return 2
    work = Path(tempfile.mkdtemp(prefix="driftloop-bench-"))
    write_dataset(work)
    ml_grpc, ml_http, ml_metrics = free_port(), free_port(), free_port()
    print(
        f"[1/5] fitting scikit-learn LogisticRegression (20 features) for MLServer, in {work}",
        flush=True,
    )
    await asyncio.to_thread(
        subprocess.run,
        [
            str(PEER_PYTHON),
            str(REPO / "bench/peers/mlserver_side.py"),
            "prepare",
            str(work),
            str(ml_grpc),
            str(ml_http),
            str(ml_metrics),
        ],
        check=True,
    )
    fitted = json.loads((work / "sklearn_coef.json").read_text())
    names = [f"f{i}" for i in range(FEATURES)]
    schema = Schema(tuple(Feature(name, "number") for name in names))
    same_model = LinearModel(
        schema,
        "binary",
        Preprocessing(tuple((n, 0.0, 1.0) for n in names), ()),
        np.asarray([fitted["coef"]]),
        np.asarray([fitted["intercept"]]),
        ("0", "1"),
    )
    row = dict(zip(names, fitted["row"], strict=True))

    broker = LocalBroker(find_kafka_libs(REPO), work / "kafka")
    print(
        "[2/5] starting Kafka, the driftloop registry and inference service, and MLServer",
        flush=True,
    )
    await asyncio.to_thread(broker.start)
    registry_port, inference_port = free_port(), free_port()
    env = {
        **os.environ,
        "DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "DRIFTLOOP_CLICKHOUSE_PATH": str(work / "clickhouse"),
        "DRIFTLOOP_ARTIFACTS_PATH": str(work / "artifacts"),
        "DRIFTLOOP_ADMIN_TOKEN": TOKEN,
        "DRIFTLOOP_RETRAINER_PORT": str(registry_port),
        "DRIFTLOOP_INFERENCE_PORT": str(inference_port),
        "DRIFTLOOP_LOG_LEVEL": "WARNING",
        "DRIFTLOOP_INFERENCE_REGISTRY_TARGET": f"127.0.0.1:{registry_port}",
    }
    processes = [
        await start([sys.executable, "-m", "driftloop.retrainer"], env, work / "retrainer.log"),
        await start([sys.executable, "-m", "driftloop.inference"], env, work / "inference.log"),
        await start(
            [str(REPO / "bench/.venv-peers/bin/mlserver"), "start", str(work / "mlserver")],
            {**os.environ, "PATH": f"{REPO / 'bench/.venv-peers/bin'}:{os.environ['PATH']}"},
            work / "mlserver.log",
        ),
    ]
    try:
        await wait_port(registry_port, processes[0], "the registry")
        await wait_port(inference_port, processes[1], "the inference service")
        await wait_port(ml_grpc, processes[2], "MLServer")
        client = DriftloopClient(
            ClientSettings(
                registry_target=f"127.0.0.1:{registry_port}",
                inference_target=f"127.0.0.1:{inference_port}",
                admin_token=TOKEN,  # type: ignore[arg-type]  # pydantic converts to SecretStr
            )
        )
        digest = await client.upload_artifact(same_model.to_bytes())
        record = await client.register(
            registry_pb2.ModelVersion(
                model="churn",
                flavor="linear",
                artifact_sha256=digest,
                schema=schema_to_proto(schema),
                output_kind=OUTPUT_KINDS["binary"],
            )
        )
        ours = (await client.predict("churn", record.version, row)).output.value
        await client.close()
        check = [
            str(PEER_PYTHON),
            str(REPO / "bench/peers/mlserver_side.py"),
            "check",
            str(work),
            str(ml_grpc),
        ]
        checked = await asyncio.to_thread(
            subprocess.run, check, capture_output=True, text=True, check=True
        )
        theirs = float(checked.stdout)
        print(
            f"[3/5] same answer: driftloop P(1)={ours:.12f}, MLServer P(1)={theirs:.12f}, "
            f"scikit-learn {fitted['p1']:.12f}",
            flush=True,
        )
        if abs(ours - theirs) > 1e-9:
            raise RuntimeError("the two servers disagree: not the same model")
        request = inference_pb2.InferenceRequest(
            model=common_pb2.ModelRef(model="churn", version=record.version), row=row_to_proto(row)
        )
        (work / "driftloop_request.bin").write_bytes(framed(request.SerializeToString()))
        targets = {
            "driftloop": (
                inference_port,
                "/driftloop.v1.InferenceService/Predict",
                work / "driftloop_request.bin",
            ),
            "MLServer": (
                ml_grpc,
                "/inference.GRPCInferenceService/ModelInfer",
                work / "mlserver_request.bin",
            ),
        }
        print("[4/5] warming up both servers", flush=True)
        for port, path, body in targets.values():
            h2load(port, path, body, 2000, 16)
        serial: dict[str, list[float]] = {name: [] for name in targets}
        loaded: dict[str, list[float]] = {name: [] for name in targets}
        for run in range(args.repeat):
            print(
                f"[5/5] run {run + 1}/{args.repeat}: serial {args.serial} requests, "
                f"then {args.requests} with 16 in flight, per server",
                flush=True,
            )
            for name, (port, path, body) in targets.items():
                serial[name].append(h2load(port, path, body, args.serial, 1)[1])
                loaded[name].append(h2load(port, path, body, args.requests, 16)[0])
        results = {
            name: {"serial_mean_ms": min(serial[name]), "rps_16": max(loaded[name])}
            for name in targets
        }
        d, m = results["driftloop"], results["MLServer"]
        print("\n| server | serial mean latency | throughput at 16 in flight |")
        print("|---|---|---|")
        for name, figures in results.items():
            print(
                f"| {name} | {figures['serial_mean_ms']:.3f} ms | {figures['rps_16']:,.0f} req/s |"
            )
        throughput = d["rps_16"] / m["rps_16"]
        latency = d["serial_mean_ms"] / m["serial_mean_ms"]
        print(f"\nthroughput ratio driftloop/MLServer: {throughput:.2f}x (goal >= 2.5x)")
        print(f"serial latency ratio driftloop/MLServer: {latency:.2f}x (goal <= 0.5x)")
        (work / "results.json").write_text(json.dumps(results, indent=2))
        return 0
    finally:
        await stop_all(processes, broker)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=40_000, help="requests per loaded run")
    parser.add_argument("--serial", type=int, default=5_000, help="requests per serial run")
    parser.add_argument("--repeat", type=int, default=3)
    sys.exit(asyncio.run(main(parser.parse_args())))
