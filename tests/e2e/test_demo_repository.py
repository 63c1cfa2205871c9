"""The demo repository ``make models`` builds, served by a real ``modelgate serve``.

Every version of the Keras and PyTorch demo CNNs (ONNX Runtime, TFLite fp32/fp16/int8, TensorFlow in
a worker process, TorchServe) must give the same answer as the model's ONNX version for the same
request, within the precision's tolerance, over V2 REST; and over the TF Serving API too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml
from sklearn.datasets import load_digits

from tests.e2e.server_process import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.frameworks]
REPO = Path(__file__).resolve().parents[2] / "model_repo"
TOLERANCE = {"tflite_fp16": 5e-3, "tflite_int8": 5e-2}


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    missing = [m for m in ("digits_keras", "digits_torch") if not (REPO / m / "config.yaml").is_file()]
    assert not missing, f"demo models {missing} are not built: run `make models` (make test does)"
    with ServerProcess(REPO) as proc:
        yield proc


def images(shape: list[int], n: int = 16) -> tuple[np.ndarray, np.ndarray]:
    data = load_digits()
    x = (data.data[-n:] / 16.0).astype(np.float32).reshape([n, *shape[1:]])
    return x, data.target[-n:]


def infer(server: ServerProcess, model: str, version: str, x: np.ndarray) -> np.ndarray:
    doc = {"inputs": [{"name": "image", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}]}
    r = httpx.post(f"{server.url}/v2/models/{model}/versions/{version}/infer", json=doc, timeout=60)
    assert r.status_code == 200, (model, version, r.text)
    (out,) = r.json()["outputs"]
    return np.array(out["data"], np.float32).reshape(out["shape"])


@pytest.mark.parametrize("model", ["digits_keras", "digits_torch"])
def test_every_version_answers_like_the_onnx_version(server: ServerProcess, model: str) -> None:
    labels: dict[str, int] = yaml.safe_load((REPO / model / "config.yaml").read_text())["labels"]
    meta = httpx.get(f"{server.url}/v2/models/{model}/versions/{labels['onnx']}").json()
    x, y = images(meta["inputs"][0]["shape"])
    reference = infer(server, model, str(labels["onnx"]), x)
    assert (reference.argmax(1) == y).mean() >= 0.9
    backends = set()
    for label, version in labels.items():
        backends.add(yaml.safe_load((REPO / model / str(version) / "config.yaml").read_text())["backend"])
        got = infer(server, model, str(version), x)
        np.testing.assert_allclose(got, reference, atol=TOLERANCE.get(label, 1e-5), err_msg=f"{model} {label}")
        assert (got.argmax(1) == reference.argmax(1)).mean() >= 0.99, label
    expected = {"onnxruntime", "tflite", "tensorflow"} | ({"torchserve"} if model == "digits_torch" else set())
    assert backends == expected


def test_tf_serving_api_on_a_savedmodel_version(server: ServerProcess) -> None:
    x, _ = images([-1, 8, 8, 1], 4)
    r = httpx.post(f"{server.url}/v1/models/digits_keras/labels/savedmodel:predict",
                   json={"instances": x.tolist()}, timeout=60)  # fmt: skip
    assert r.status_code == 200, r.text
    labels = yaml.safe_load((REPO / "digits_keras" / "config.yaml").read_text())["labels"]
    np.testing.assert_allclose(np.array(r.json()["predictions"]), infer(server, "digits_keras",
                               str(labels["onnx"]), x), atol=1e-5)  # fmt: skip
