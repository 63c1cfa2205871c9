"""The torchserve image's entrypoint and the Kustomize example config, run for real (no container):
deploy/docker/torchserve-entrypoint.sh packages digits_torch from the demo repository and starts
TorchServe; a gateway configured with deploy/kustomize/base/config/digits_torch_ts.yaml (addresses
changed to the local ports) answers through it like the model's ONNX version."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

from tests.deploy.conftest import DEPLOY, ROOT
from tests.e2e.server_process import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.frameworks, pytest.mark.slow]
REPO = ROOT / "model_repo"
ENTRYPOINT = DEPLOY / "docker" / "torchserve-entrypoint.sh"
WAIT_SCRIPT = DEPLOY / "kustomize" / "base" / "config" / "wait_for_backends.py"


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def local_config(tmp: Path, ports: list[int]) -> Path:
    """The image's config.properties, on loopback and free ports."""
    text = (DEPLOY / "docker" / "torchserve.properties").read_text()
    for default, port in zip((8080, 8081, 8082), ports, strict=False):
        text = text.replace(f"http://0.0.0.0:{default}", f"http://127.0.0.1:{port}")
    text += f"grpc_inference_port={ports[3]}\ngrpc_management_port={ports[4]}\n"
    path = tmp / "config.properties"
    path.write_text(text)
    return path


def _registered(management: str) -> bool:
    try:
        return httpx.get(f"{management}/models/digits_torch", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture(scope="module")
def torchserve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    assert (REPO / "digits_torch" / "config.yaml").is_file(), "demo models not built: run `make models`"
    tmp = tmp_path_factory.mktemp("torchserve_image")
    ports = free_ports(5)
    env = {**os.environ, "TS_CONFIG": str(local_config(tmp, ports)), "TS_MODELS": "digits_torch",
           "MODELGATE_MODEL_REPOSITORY": str(REPO), "TS_MODEL_STORE": str(tmp / "store"),
           "LOG_LOCATION": str(tmp / "logs"), "METRICS_LOCATION": str(tmp / "logs"), "TEMP": str(tmp),
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}  # fmt: skip
    log = (tmp / "entrypoint.log").open("wb")
    proc = subprocess.Popen(["/bin/sh", str(ENTRYPOINT)], cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    log.close()
    inference, management = f"http://127.0.0.1:{ports[0]}", f"http://127.0.0.1:{ports[1]}"
    try:
        deadline = time.monotonic() + 180
        while not _registered(management):
            assert proc.poll() is None, (tmp / "entrypoint.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "TorchServe did not register digits_torch in 180 s"
            time.sleep(0.2)  # polling interval, bounded by the deadline above
        # The gateway pod's init container waits for a READY worker: run it the same way.
        waited = subprocess.run([sys.executable, str(WAIT_SCRIPT)], capture_output=True, text=True, timeout=200,
                                env={**os.environ, "WAIT_FOR": f"{management}/models/digits_torch",
                                     "WAIT_SECONDS": "180"}, check=False)  # fmt: skip
        assert (waited.returncode, waited.stderr) == (0, "")
        yield inference, management
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def gateway_repo(tmp: Path, inference: str, management: str) -> Path:
    """digits_torch_ts exactly as the Kustomize example (addresses aside) beside digits_torch's ONNX version."""
    example = (DEPLOY / "kustomize" / "base" / "config" / "digits_torch_ts.yaml").read_text()
    example = example.replace("http://torchserve:8080", inference).replace("http://torchserve:8081", management)
    (tmp / "digits_torch_ts" / "1").mkdir(parents=True)
    (tmp / "digits_torch_ts" / "config.yaml").write_text(example)
    onnx_version = yaml.safe_load((REPO / "digits_torch" / "config.yaml").read_text())["labels"]["onnx"]
    shutil.copytree(REPO / "digits_torch" / str(onnx_version), tmp / "digits_torch_onnx" / "1")
    (tmp / "digits_torch_onnx" / "config.yaml").write_text("version_policy: {all: true}\n")
    return tmp


def infer(url: str, model: str, x: np.ndarray) -> np.ndarray:
    doc = {"inputs": [{"name": "image", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}]}
    response = httpx.post(f"{url}/v2/models/{model}/infer", json=doc, timeout=60)
    assert response.status_code == 200, response.text
    (out,) = response.json()["outputs"]
    return np.array(out["data"], np.float32).reshape(out["shape"])


def test_the_gateway_answers_through_the_images_torchserve(torchserve: tuple[str, str], tmp_path: Path) -> None:
    from sklearn.datasets import load_digits

    x = (load_digits().data[-8:] / 16.0).astype(np.float32).reshape(8, 1, 8, 8)
    with ServerProcess(gateway_repo(tmp_path, *torchserve)) as server:
        got = infer(server.url, "digits_torch_ts", x)
        reference = infer(server.url, "digits_torch_onnx", x)
    np.testing.assert_allclose(got, reference, atol=1e-5)
