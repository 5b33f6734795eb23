"""The gateway's Open Inference Protocol API in the standalone composition (real broker,
real ClickHouse engine), called by tritonclient, unchanged, from a process of its own
(tests/integration/oip_client.py). The model has a champion and no routing policy: the
gateway's default policy serves it. Then the one-matrix layout, through the gateway's own
generated stub (this process never imports tritonclient)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from prometheus_client import REGISTRY

from driftloop.clickhouse.client import ClickHouse
from driftloop.clickhouse.prediction_log import PredictionLog
from driftloop.kit.grpc_client import open_channel
from driftloop.kit.settings import KafkaSettings
from driftloop.models.convert import row_to_proto
from driftloop.models.registration import version_record
from driftloop.models.training import TrainingSpec, train_linear
from driftloop.oip.v2 import grpc_predict_v2_pb2 as oip_pb2
from driftloop.oip.v2 import grpc_predict_v2_pb2_grpc as oip_grpc
from driftloop.retrainer.version_proto import new_version_from_proto
from driftloop.v1 import gateway_pb2, registry_pb2
from tests.conftest import REPO
from tests.datasets import churn, without
from tests.integration.stack import ADMIN, Stack, until
from tests.retrain_data import MODEL, population, rows_of
from tests.standalone import standalone

OVERRIDES: dict[str, dict[str, object]] = {
    "drift": {"evaluate_every_s": 3600, "evaluate_every_rows": 0},
    "retrainer": {"training": False},
    "shadow": {"compare_every_s": 3600},
}
SERVICE = "inference.GRPCInferenceService"


async def oip_client(job: dict[str, Any]) -> dict[str, Any]:
    """Run the tritonclient application on `job`; what it printed."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.integration.oip_client",
        json.dumps(job),
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        output, errors = await asyncio.wait_for(process.communicate(), 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, errors.decode()
    result: dict[str, Any] = json.loads(output)
    return result


def handled(method: str, code: str) -> float:
    labels = {"grpc_type": "unary", "grpc_service": SERVICE, "grpc_method": method}
    return REGISTRY.get_sample_value("grpc_server_handled_total", labels | {"grpc_code": code}) or 0


async def test_an_unchanged_oip_client_gets_predicts_answer_logged_with_its_variant(
    kafka_settings: KafkaSettings, clickhouse: ClickHouse, tmp_path: Path
) -> None:
    async with standalone(kafka_settings, clickhouse, tmp_path, "oip-test", OVERRIDES) as stack:
        trained = train_linear(population(1, 2000), TrainingSpec(target="churned", seed=1))
        record = version_record(
            trained, model=MODEL, artifact_sha256=stack.store.put(trained.artifact), source="t"
        )
        registry = stack.services.retrainer.registry
        version = (await registry.register(new_version_from_proto(record), "tester")).version
        rows = rows_of(population(2, 3))

        # Neither a policy nor a champion: the error names the commands that fix it.
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stack.client.serve(MODEL, rows[0])
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        details = str(refused.value.details())
        assert f"driftloop models alias --model {MODEL} --alias champion --version N" in details
        assert f"driftloop routing set --model {MODEL} --stable N" in details

        # The champion alone serves it (the gateway hears the alias move): no policy written.
        await stack.client.set_alias(MODEL, "champion", version)

        async def champion_served() -> bool:
            try:
                await stack.client.serve(MODEL, rows[0])
            except grpc.aio.AioRpcError as error:
                assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
                return False
            return True

        await until(champion_served, 30)
        assert stack.services.gateway.book.get(MODEL) is None
        predicted = [await stack.client.serve(MODEL, row) for row in rows]
        assert {(p.version, p.variant) for p in predicted} == {(version, "stable")}

        seen = await oip_client(
            {
                "target": stack.services.ports.target("gateway"),
                "model": MODEL,
                "rows": rows,
                "id": "oip-1",
                "entity_key": "user-7",
                "unknown_model": "nobody",
            }
        )

        # The same prediction as Predict, row by row; the ids and the variant with it.
        outputs = seen["outputs"]
        assert outputs["value"] == [p.output.value for p in predicted]
        assert outputs["label"] == [p.output.label for p in predicted]
        assert seen["classes"] == sorted(predicted[0].output.probabilities)
        assert outputs["probabilities"] == [
            [p.output.probabilities[c] for c in seen["classes"]] for p in predicted
        ]
        assert outputs["request_id"] == ["oip-1-0", "oip-1-1", "oip-1-2"]
        assert outputs["version"] == [version] * 3 and outputs["variant"] == ["stable"] * 3
        assert (seen["id"], seen["model_version"]) == ("oip-1", version)
        single = seen["single"]  # one row without an id: the gateway's id, echoed
        assert len(single["id"]) == 32 and single["request_id"] == [single["id"]]
        assert single["value"] == [predicted[0].output.value]

        # Health and metadata, from the champion's schema.
        assert seen["live"] and seen["ready"] and seen["model_ready"]
        assert not seen["unknown_ready"]
        metadata = seen["metadata"]
        assert metadata["versions"] == [version] and metadata["platform"] == "linear"
        assert [(i["name"], i["datatype"]) for i in metadata["inputs"]] == [
            ("x0", "FP64"),
            ("x1", "FP64"),
            ("x2", "FP64"),
            ("region", "BYTES"),
        ]
        assert {o["name"]: o["shape"] for o in metadata["outputs"]}["probabilities"] == ["-1", "2"]

        # Mistakes: the tensor named; an unroutable model names the fix.
        wrong = seen["wrong_tensor"]
        assert wrong["status"] == "StatusCode.INVALID_ARGUMENT"
        assert "inputs[region]" in wrong["message"] and "send BYTES" in wrong["message"]
        unknown = seen["unknown_model"]
        assert unknown["status"] == "StatusCode.FAILED_PRECONDITION"
        assert "driftloop models alias --model nobody --alias champion" in unknown["message"]

        # In the prediction log (ClickHouse), with the variant, the request id and the key.
        log = PredictionLog(clickhouse)

        async def logged() -> list[dict[str, Any]]:
            rows = await log.last_n(MODEL, version, 50)
            return [row for row in rows if str(row["request_id"]).startswith("oip-1-")]

        async def all_logged() -> bool:
            return len(await logged()) == 3

        await until(all_logged, 30)
        by_id = {r["request_id"]: r for r in await logged()}
        assert sorted(by_id) == ["oip-1-0", "oip-1-1", "oip-1-2"]
        for i, row in enumerate(rows):
            entry = by_id[f"oip-1-{i}"]
            assert (entry["variant"], entry["version"], entry["entity_key"]) == (
                "stable",
                version,
                "user-7",
            )
            assert entry["categories"]["region"] == row["region"]
            assert entry["numbers"]["x0"] == row["x0"]
            assert entry["output_value"] == predicted[i].output.value

        # The gateway's own gRPC metrics count the new service.
        assert handled("ModelInfer", "OK") >= 1
        assert handled("ModelInfer", "InvalidArgument") >= 1
        assert handled("ModelMetadata", "OK") >= 1


async def test_a_numeric_model_takes_one_matrix_and_mistakes_name_the_tensor(stack: Stack) -> None:
    """The [batch, n_features] layout, through the gateway's own stub (in process)."""
    trained = train_linear(
        without(churn(), "segment", "spend", "plan", "region"),
        TrainingSpec(target="churned", seed=1),
    )
    record = version_record(
        trained, model="churn", artifact_sha256=stack.store.put(trained.artifact), source="t"
    )
    registered = await stack.registry.RegisterModelVersion(
        registry_pb2.RegisterModelVersionRequest(version=record), timeout=10, metadata=ADMIN
    )
    await stack.champion(registered.version)
    gateway = await stack.gateway()
    channel = open_channel(f"127.0.0.1:{stack.gateways[-1].port}")
    stack.channels.append(channel)
    oip = oip_grpc.GRPCInferenceServiceStub(channel)
    rows = [{f"x{i}": 0.25 * i - 0.5 * n for i in range(6)} for n in range(3)]
    predicted = [
        await gateway.Predict(
            gateway_pb2.PredictRequest(model="churn", row=row_to_proto(row)), timeout=10
        )
        for row in rows
    ]
    matrix = np.array([[row[f"x{i}"] for i in range(6)] for row in rows], dtype="<f4")
    request = oip_pb2.ModelInferRequest(
        model_name="churn",
        id="m-1",
        inputs=[oip_pb2.ModelInferRequest.InferInputTensor(name="input", datatype="FP32")],
        outputs=[oip_pb2.ModelInferRequest.InferRequestedOutputTensor(name="value")],
        raw_input_contents=[matrix.tobytes()],
    )
    request.inputs[0].shape.extend([3, 6])
    response = await oip.ModelInfer(request, timeout=10)
    assert [o.name for o in response.outputs] == ["value"]
    values = np.frombuffer(response.raw_output_contents[0], dtype="<f8").tolist()
    # FP32 in, as sent: the same rows as Predict's once rounded to float32.
    assert values == pytest.approx([p.output.value for p in predicted], abs=1e-6)

    del request.inputs[0].shape[:]
    request.inputs[0].shape.extend([3, 5])
    with pytest.raises(grpc.aio.AioRpcError) as wrong:
        await oip.ModelInfer(request, timeout=10)
    assert wrong.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "inputs[input]" in str(wrong.value.details())
    assert "[batch, 6]" in str(wrong.value.details())
    request.model_version = registered.version
    with pytest.raises(grpc.aio.AioRpcError) as pinned:
        await oip.ModelInfer(request, timeout=10)
    assert pinned.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "model_version" in str(pinned.value.details())
