"""A real ``modelgate serve`` whose /metrics carries every series the dashboards and rules read.

The repository holds the demo MLP and ``remote_down``, a TF Serving model whose server refuses
connections (a socket bound and never listening), so requests to it exercise retries, the circuit
breaker, rejections, server errors and backend-down series. Health checks are set an hour apart so
``remote_down`` stays loaded (and its requests reach the backend) for the whole test session.

The lifecycle series (deployments, rollbacks, traffic weights, rollout step) exist only once something
is deployed, so :func:`deploy_round` performs real operations through the management API: a load of a
broken version (a failed deployment), then a canary rollout of ``digits_mlp`` v2 (weights 50/50, step 1)
that the operator aborts (a rollback, reason ``aborted``).
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import httpx

from tests.e2e.server_process import ServerProcess
from tests.onnx_models import write_digits_repo

PIXELS = [0.0, 0.0, 5.0, 13.0, 9.0, 1.0, 0.0, 0.0] * 8
GOOD = {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": PIXELS}]}
BAD_SHAPE = {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 63], "data": PIXELS[:63]}]}
TOKEN = "deploy-test-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
IMAGE = {"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 8, 8, 1], "data": PIXELS}]}


def refusing_port() -> socket.socket:
    """A socket bound to a free loopback port and never listening: connections to it are refused."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


def write_repo(repo: Path, refused_port: int) -> Path:
    mlp = write_digits_repo(repo)
    config = mlp / "config.yaml"
    config.write_text(config.read_text().replace("{latest: 1}", "{specific: [1]}"))  # v2 only by a rollout
    shutil.copytree(mlp / "1", mlp / "2")
    (mlp / "3").mkdir()
    (mlp / "3" / "model.onnx").write_bytes(b"not an onnx model")  # a deployment that fails
    model = repo / "remote_down"
    (model / "1").mkdir(parents=True)
    (model / "config.yaml").write_text(
        "backend: tfserving\n"
        "inputs: [{name: image, datatype: FP32, shape: [-1, 8, 8, 1]}]\n"
        "outputs: [{name: probs, datatype: FP32, shape: [-1, 10]}]\n"
        f"parameters: {{address: '127.0.0.1:{refused_port}', model_name: digits}}\n",
        encoding="utf-8",
    )
    return repo


def start_gateway(repo: Path) -> ServerProcess:
    return ServerProcess(repo, env={"MODELGATE_HEALTH_CHECK_SECONDS": "3600", "MODELGATE_MANAGEMENT_TOKEN": TOKEN}
                         ).start()  # fmt: skip


def deploy_round(client: httpx.Client, management_url: str) -> None:
    """A failed deployment and an aborted rollout of digits_mlp (statuses and outcomes are checked)."""
    api = f"{management_url}/api/models/digits_mlp"
    failed = client.post(f"{api}/load", json={"source": "3"}, headers=AUTH)
    assert failed.status_code >= 400, failed.text
    plan = {"version": "2", "steps": [50, 100], "min_requests": 1_000_000}  # stays at step 1 until aborted
    started = client.post(f"{api}/rollout", json=plan, headers=AUTH)
    assert started.status_code == 200, started.text
    aborted = client.post(f"{api}/rollout/abort", json={}, headers=AUTH)
    assert aborted.status_code == 200, aborted.text
    assert aborted.json()["status"] == "aborted", aborted.text


def load_round(client: httpx.Client, base_url: str, good: int = 40) -> None:
    """Successful, client-error, unknown-model and server-error requests (statuses are checked)."""
    for _ in range(good):
        assert client.post(f"{base_url}/v2/models/digits_mlp/infer", json=GOOD).status_code == 200
    assert client.post(f"{base_url}/v2/models/digits_mlp/infer", json=BAD_SHAPE).status_code == 400
    assert client.post(f"{base_url}/v2/models/no_such_model/infer", json=GOOD).status_code == 404
    for _ in range(3):
        assert client.post(f"{base_url}/v2/models/remote_down/infer", json=IMAGE).status_code == 503
