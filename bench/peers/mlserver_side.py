"""The MLServer side of bench/inference_vs_mlserver.py. Runs in the peer environment
(bench/.venv-peers: MLServer 1.7, mlserver-sklearn, scikit-learn), never in driftloop's.

    prepare WORK GRPC_PORT HTTP_PORT METRICS_PORT  fit LogisticRegression on WORK/train.csv,
        write the MLServer model folder, the sklearn coefficients, the framed gRPC request
    pipeline WORK GRPC_PORT HTTP_PORT METRICS_PORT serve WORK/pipeline.joblib (a fitted
        scikit-learn pipeline, fitted by bench/sklearn_vs_mlserver.py) with mlserver-sklearn;
        the request is WORK/row.json as a one-row DataFrame (content type "pd", a column per
        feature, strings as BYTES)
    check WORK GRPC_PORT                           one ModelInfer call; print P(class 1)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def prepare(work: Path, grpc_port: int, http_port: int, metrics_port: int) -> None:
    import joblib
    from mlserver.grpc import dataplane_pb2 as pb
    from sklearn.linear_model import LogisticRegression

    data = np.loadtxt(work / "train.csv", delimiter=",", skiprows=1)
    x, y = data[:, :-1], data[:, -1].astype(int)
    model = LogisticRegression(C=1.0, max_iter=1000).fit(x, y)
    folder = model_folder(work, grpc_port, http_port, metrics_port)
    joblib.dump(model, folder / "model.joblib")
    (work / "sklearn_coef.json").write_text(
        json.dumps(
            {
                "coef": model.coef_[0].tolist(),
                "intercept": float(model.intercept_[0]),
                "row": x[0].tolist(),
                "p1": float(model.predict_proba(x[:1])[0, 1]),
            }
        )
    )
    request = pb.ModelInferRequest(
        model_name="churn",
        inputs=[
            pb.ModelInferRequest.InferInputTensor(
                name="input-0",
                datatype="FP64",
                shape=[1, x.shape[1]],
                contents=pb.InferTensorContents(fp64_contents=x[0].tolist()),
            )
        ],
        outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name="predict_proba")],
    )
    body = request.SerializeToString()
    (work / "mlserver_request.bin").write_bytes(b"\0" + len(body).to_bytes(4, "big") + body)


def model_folder(work: Path, grpc_port: int, http_port: int, metrics_port: int) -> Path:
    """MLServer's folder: its settings and the model's (mlserver-sklearn on model.joblib)."""
    folder = work / "mlserver"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model-settings.json").write_text(
        json.dumps(
            {
                "name": "churn",
                "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": "./model.joblib", "version": "v1"},
            }
        )
    )
    (folder / "settings.json").write_text(
        json.dumps(
            {
                "grpc_port": grpc_port,
                "http_port": http_port,
                "metrics_port": metrics_port,
                "parallel_workers": 0,
                "host": "127.0.0.1",
            }
        )
    )
    return folder


def pipeline(work: Path, grpc_port: int, http_port: int, metrics_port: int) -> None:
    from mlserver.grpc import dataplane_pb2 as pb

    folder = model_folder(work, grpc_port, http_port, metrics_port)
    (folder / "model.joblib").write_bytes((work / "pipeline.joblib").read_bytes())
    row = json.loads((work / "row.json").read_text())
    inputs = []
    for name, value in row.items():
        if isinstance(value, str):
            inputs.append(
                pb.ModelInferRequest.InferInputTensor(
                    name=name,
                    datatype="BYTES",
                    shape=[1],
                    parameters={"content_type": pb.InferParameter(string_param="str")},
                    contents=pb.InferTensorContents(bytes_contents=[value.encode()]),
                )
            )
        else:
            inputs.append(
                pb.ModelInferRequest.InferInputTensor(
                    name=name,
                    datatype="FP64",
                    shape=[1],
                    contents=pb.InferTensorContents(fp64_contents=[float(value)]),
                )
            )
    request = pb.ModelInferRequest(
        model_name="churn",
        inputs=inputs,
        parameters={"content_type": pb.InferParameter(string_param="pd")},
        outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name="predict_proba")],
    )
    body = request.SerializeToString()
    (work / "mlserver_request.bin").write_bytes(b"\0" + len(body).to_bytes(4, "big") + body)


def check(work: Path, grpc_port: int) -> None:
    import grpc
    from mlserver.grpc import dataplane_pb2 as pb
    from mlserver.grpc import dataplane_pb2_grpc as pb_grpc

    framed = (work / "mlserver_request.bin").read_bytes()
    request = pb.ModelInferRequest.FromString(framed[5:])
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        reply = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=10)
    output = reply.outputs[0]
    if reply.raw_output_contents:
        values = np.frombuffer(reply.raw_output_contents[0], dtype=np.float64)
    else:
        values = np.asarray(output.contents.fp64_contents)
    print(float(values[1]))


if __name__ == "__main__":
    command, folder = sys.argv[1], Path(sys.argv[2])
    if command == "prepare":
        prepare(folder, *(int(a) for a in sys.argv[3:6]))
    elif command == "pipeline":
        pipeline(folder, *(int(a) for a in sys.argv[3:6]))
    else:
        check(folder, int(sys.argv[3]))
