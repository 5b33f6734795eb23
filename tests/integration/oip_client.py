"""An application of the gateway's Open Inference Protocol API: tritonclient, unchanged, in
a process of its own. Run as `python -m tests.integration.oip_client '<job JSON>'`; prints
what it saw as JSON.

Its own process for two reasons: an OIP client is another program, and tritonclient's
generated code registers package `inference` in protobuf's default pool, as the gateway's
does (driftloop.oip.v2): two definitions of one package cannot live in one process.

The job: {"target", "model", "rows": [{feature: number or text}], "id", "entity_key",
"unknown_model"}. Every row becomes one tensor per feature, [batch, 1], FP64 for numbers
and BYTES for text, as a user of tritonclient writes it.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

OUTPUTS = ("value", "label", "probabilities", "request_id", "version", "variant")


def tensors(rows: list[dict[str, Any]], wrong: str = "") -> list[triton.InferInput]:
    """One input per feature; `wrong`: that feature sent as FP64 whatever it holds."""
    inputs = []
    for name in rows[0]:
        values = [row[name] for row in rows]
        text = isinstance(values[0], str) and name != wrong
        if text:
            array = np.array([[v.encode()] for v in values], dtype=np.object_)
        else:
            array = np.array([[0.0 if isinstance(v, str) else v] for v in values], np.float64)
        tensor = triton.InferInput(name, list(array.shape), "BYTES" if text else "FP64")
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


def failure(call: Any) -> dict[str, str]:
    try:
        call()
    except InferenceServerException as error:
        return {"status": str(error.status()), "message": str(error.message())}
    return {"status": "OK", "message": ""}


def main(job: dict[str, Any]) -> dict[str, Any]:
    client = triton.InferenceServerClient(job["target"])
    try:
        model, rows = job["model"], job["rows"]
        parameters = {"entity_key": job["entity_key"]} if job.get("entity_key") else None
        result = client.infer(model, tensors(rows), request_id=job["id"], parameters=parameters)
        response = result.get_response()
        metadata = client.get_model_metadata(model, as_json=True)
        single = client.infer(model, tensors(rows[:1]))  # one row, no id: the gateway's
        first_text = next(name for name, value in rows[0].items() if isinstance(value, str))
        return {
            "live": client.is_server_live(),
            "ready": client.is_server_ready(),
            "model_ready": client.is_model_ready(model),
            "unknown_ready": client.is_model_ready(job["unknown_model"]),
            "metadata": metadata,
            "id": response.id,
            "model_version": response.model_version,
            "outputs": {
                name: result.as_numpy(name).tolist()
                for name in OUTPUTS
                if result.as_numpy(name) is not None
            },
            "single": {
                "id": single.get_response().id,
                "request_id": single.as_numpy("request_id").tolist(),
                "value": single.as_numpy("value").tolist(),
            },
            "classes": json.loads(
                result.get_output("probabilities").parameters["classes"].string_param
            ),
            "wrong_tensor": failure(lambda: client.infer(model, tensors(rows, wrong=first_text))),
            "unknown_model": failure(lambda: client.infer(job["unknown_model"], tensors(rows))),
        }
    finally:
        client.close()


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1])), default=lambda b: b.decode()))
