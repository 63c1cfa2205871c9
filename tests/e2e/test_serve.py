"""``modelgate serve`` as a real process: every protocol, against real sockets."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import onnxruntime as ort
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.datasets import load_digits

from gateway.protos import open_inference_grpc_pb2 as pb
from gateway.protos import open_inference_grpc_pb2_grpc as pb_grpc
from tests.e2e.server_process import ServerProcess
from tests.onnx_models import write_model

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(demo_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = tmp_path_factory.mktemp("e2e_repo")
    shutil.copytree(demo_repo / "digits_mlp", repo / "digits_mlp")
    write_model(repo, "broken", "backend: onnxruntime\nversion_policy: {latest: 0}\n")
    with ServerProcess(repo) as proc:
        yield proc


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    data = load_digits()
    return data.data[:16].astype(np.float32), data.target[:16]


def expected(demo_repo: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(demo_repo / "digits_mlp/1/model.onnx"))
    return np.asarray(session.run(None, {"pixels": x})[0])


def test_rest_json(server: ServerProcess, demo_repo: Path, digits: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = digits
    doc = {
        "id": "e2e",
        "inputs": [{"name": "pixels", "datatype": "FP32", "shape": [16, 64], "data": x.ravel().tolist()}],
    }
    r = httpx.post(f"{server.url}/v2/models/digits_mlp/infer", json=doc)
    assert r.status_code == 200 and r.json()["id"] == "e2e"
    probs = np.array(r.json()["outputs"][0]["data"], np.float32).reshape(16, 10)
    np.testing.assert_allclose(probs, expected(demo_repo, x), rtol=1e-6, atol=1e-7)
    assert (probs.argmax(1) == y).mean() >= 0.9


def test_rest_binary(server: ServerProcess, demo_repo: Path, digits: tuple[np.ndarray, np.ndarray]) -> None:
    x, _ = digits
    header = json.dumps({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [16, 64],
                                     "parameters": {"binary_data_size": x.nbytes}}],
                         "parameters": {"binary_data_output": True}}).encode()  # fmt: skip
    r = httpx.post(f"{server.url}/v2/models/digits_mlp/infer", content=header + x.tobytes(),
                   headers={"Inference-Header-Content-Length": str(len(header))})  # fmt: skip
    n = int(r.headers["inference-header-content-length"])
    assert json.loads(r.content[:n])["outputs"][0]["parameters"] == {"binary_data_size": 16 * 10 * 4}
    assert np.array_equal(np.frombuffer(r.content[n:], "<f4").reshape(16, 10), expected(demo_repo, x))


def test_grpc_raw_contents(server: ServerProcess, demo_repo: Path, digits: tuple[np.ndarray, np.ndarray]) -> None:
    x, _ = digits
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc}") as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        assert stub.ServerReady(pb.ServerReadyRequest()).ready
        request = pb.ModelInferRequest(model_name="digits_mlp", id="g1", raw_input_contents=[x.tobytes()])
        request.inputs.add(name="pixels", datatype="FP32", shape=[16, 64])
        response = stub.ModelInfer(request)
        assert response.id == "g1" and response.outputs[0].shape == [16, 10]
        probs = np.frombuffer(response.raw_output_contents[0], "<f4").reshape(16, 10)
        assert np.array_equal(probs, expected(demo_repo, x))
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(pb.ModelInferRequest(model_name="nope"))
        assert info.value.code() is grpc.StatusCode.NOT_FOUND


def test_broken_model_beside_good_one(server: ServerProcess) -> None:
    rows = httpx.post(f"{server.url}/v2/repository/index").json()
    broken = next(r for r in rows if r["name"] == "broken")
    assert broken["state"] == "UNAVAILABLE" and "version_policy.latest" in broken["reason"]
    assert httpx.get(f"{server.url}/v2/health/ready").json() == {"ready": True}
    doc = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1.0]}]}
    r = httpx.post(f"{server.url}/v2/models/broken/infer", json=doc)
    assert r.status_code == 503 and "broken" in r.json()["error"]


def test_metrics_endpoint(server: ServerProcess) -> None:
    httpx.post(f"{server.url}/v2/models/digits_mlp/infer", content=b"{oops")
    text = httpx.get(f"http://127.0.0.1:{server.metrics}/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in (
        "modelgate_requests",
        "modelgate_request_duration_seconds",
        "modelgate_inflight_requests",
        "modelgate_backend_inference_duration_seconds",
        "modelgate_model_state",
        "modelgate_build_info",
    ):
        assert name in families, name
    bad = [s for s in families["modelgate_requests"].samples
           if s.labels.get("status") == "400" and s.labels.get("model") == "digits_mlp"]  # fmt: skip
    assert bad and bad[0].value >= 1


def test_tf_serving_rest_and_grpc(
    server: ServerProcess, demo_repo: Path, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    from gateway.core.codec.datatypes import numpy_dtype
    from gateway.core.types import Tensor
    from gateway.protos.tfserving.tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
    from gateway.tensorproto import tensor_from_proto, tensor_to_proto

    x, _ = digits
    want = expected(demo_repo, x[:2])
    rows = httpx.post(f"{server.url}/v1/models/digits_mlp:predict", json={"instances": x[:2].tolist()}).json()
    np.testing.assert_allclose(np.array(rows["predictions"], np.float32), want, rtol=1e-6, atol=1e-7)
    status = httpx.get(f"{server.url}/v1/models/digits_mlp").json()
    assert status["model_version_status"][0]["state"] == "AVAILABLE"
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "digits_mlp"
        request.inputs["pixels"].CopyFrom(tensor_to_proto(Tensor("pixels", "FP32", x[:2].astype(numpy_dtype("FP32")))))
        response = stub.Predict(request, timeout=10)
        probs = tensor_from_proto("probs", response.outputs["probs"]).data
        assert np.array_equal(probs, want)


@pytest.mark.parametrize("freeze", [True, False])
def test_start_up_heap_is_frozen_unless_turned_off(tmp_path: Path, freeze: bool) -> None:
    """gc_freeze and gc_gen0_threshold (default on, 10000): once the models are loaded the start-up heap
    leaves the collector's reach and young collections run less often; both can be turned off."""
    repo = tmp_path / "repo"
    write_model(repo, "m", "backend: onnxruntime\n")
    env = {} if freeze else {"MODELGATE_GC_FREEZE": "false", "MODELGATE_GC_GEN0_THRESHOLD": "0"}
    with ServerProcess(repo, env=env) as server:
        line = server.wait_for_log("modelgate ready")
    if freeze:
        frozen = re.search(r"; (\d+) start-up objects frozen \(gc_freeze\), young collections every 10000 ", line)
        assert frozen is not None, line
        assert int(frozen.group(1)) > 10_000  # modules, protobuf descriptors, the loaded model
    else:  # CPython's own threshold
        assert line.rstrip().endswith("; gc_freeze off, young collections every 700 allocations"), line
