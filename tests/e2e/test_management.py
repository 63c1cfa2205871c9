"""The control plane on a real gateway process: token, load/unload under load, bad sources, deploy CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from gateway.protos import open_inference_grpc_pb2 as pb
from gateway.protos import open_inference_grpc_pb2_grpc as pb_grpc
from tests.e2e.load_driver import LoadDriver
from tests.e2e.server_process import ServerProcess

pytestmark = pytest.mark.e2e

TOKEN = "s3cret-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def repo(demo_repo: Path, tmp_path: Path) -> Path:
    target = tmp_path / "repo"
    shutil.copytree(demo_repo, target)
    return target


@pytest.fixture
def server(repo: Path) -> Iterator[ServerProcess]:
    with ServerProcess(repo, env={"MODELGATE_MANAGEMENT_TOKEN": TOKEN}) as proc:
        yield proc


def add_version(repo: Path, version: int) -> None:
    shutil.copytree(repo / "digits_mlp" / "1", repo / "digits_mlp" / str(version))


def add_broken_version(repo: Path, version: int) -> None:
    (repo / "digits_mlp" / str(version)).mkdir()
    (repo / "digits_mlp" / str(version) / "model.onnx").write_bytes(b"this is not an onnx model")


def deploy(server: ServerProcess, *args: str, token: str | None = TOKEN) -> subprocess.CompletedProcess[str]:
    auth = ["--token", token] if token else []
    return subprocess.run([sys.executable, "-m", "gateway.cli", "deploy", "--url", server.management_url, *auth, *args],
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def tree(repo: Path) -> list[str]:
    return sorted(str(p.relative_to(repo)) for p in repo.rglob("*") if ".modelgate" not in p.parts)


@pytest.mark.parametrize("headers", [{}, {"authorization": "Bearer wrong"}, {"authorization": TOKEN}])
def test_management_and_repository_routes_need_the_token(server: ServerProcess, headers: dict[str, str]) -> None:
    for method, url in [
        ("GET", f"{server.management_url}/api/models"),
        ("POST", f"{server.management_url}/api/models/digits_mlp/load"),
        ("GET", f"{server.management_url}/api/history"),
        ("POST", f"{server.url}/v2/repository/index"),
        ("POST", f"{server.url}/v2/repository/models/digits_mlp/unload"),
    ]:
        r = httpx.request(method, url, headers=headers)
        assert r.status_code == 401, (url, r.text)
        assert "bearer token" in r.json()["error"]
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc}") as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
        with pytest.raises(grpc.RpcError) as info:
            stub.RepositoryIndex(pb.RepositoryIndexRequest(), metadata=list(headers.items()))
        assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
        answer = stub.RepositoryIndex(pb.RepositoryIndexRequest(), metadata=list(AUTH.items()))
        assert {(m.name, m.version, m.state) for m in answer.models} == {("digits_mlp", "1", "READY")}
    assert httpx.get(f"{server.management_url}/api/models", headers=AUTH).status_code == 200
    assert httpx.get(f"{server.management_url}/api/health").status_code == 200


def test_a_non_loopback_management_host_without_a_token_refuses_to_start(repo: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--model-repository", str(repo), "--http-port", "0"],
        capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "MODELGATE_MANAGEMENT_HOST": "0.0.0.0"},
    )  # fmt: skip
    assert result.returncode == 2
    assert "management_token: required when management_host (0.0.0.0) is not a loopback" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_new_version_is_swapped_in_under_load_without_a_failed_request(repo: Path, server: ServerProcess) -> None:
    add_version(repo, 2)
    with LoadDriver(server.url) as load:
        load.wait_for(200)
        r = httpx.post(f"{server.management_url}/api/models/digits_mlp/load", json={"source": "2"}, headers=AUTH,
                       timeout=300)  # fmt: skip
        assert r.status_code == 200, r.text
        assert r.json()["warmup"]["requests"] == 3
        load.wait_for(200)
        r = httpx.post(f"{server.management_url}/api/models/digits_mlp/unload", json={"version": "1"}, headers=AUTH,
                       timeout=300)  # fmt: skip
        assert r.status_code == 200, r.text
        load.wait_for(200)
    assert load.failures() == []
    outcomes = load.snapshot()
    assert outcomes[0].version == "1" and outcomes[-1].version == "2"
    last_v1 = max(i for i, o in enumerate(outcomes) if o.version == "1")
    assert all(o.version == "2" for o in outcomes[last_v1 + 1 :])


def test_a_version_that_cannot_load_leaves_the_serving_one_untouched(repo: Path, server: ServerProcess) -> None:
    add_broken_version(repo, 2)
    with LoadDriver(server.url) as load:
        load.wait_for(100)
        r = httpx.post(f"{server.management_url}/api/models/digits_mlp/load", json={"source": "2"}, headers=AUTH,
                       timeout=300)  # fmt: skip
        assert r.status_code == 503
        assert "version 2 of model 'digits_mlp' was not deployed: failed to load" in r.json()["error"]
        assert "version 1 keeps serving" in r.json()["error"] and str(repo) not in r.json()["error"]
        load.wait_for(100)
    assert load.failures() == [] and set(load.versions()) == {"1"}
    history = httpx.get(f"{server.management_url}/api/history", headers=AUTH).json()["records"]
    assert [(h["version"], h["action"], h["outcome"]) for h in history] == [("2", "load", "failed")]


@pytest.mark.parametrize(
    "source", ["https://evil.example/model.onnx", "../../etc", "/etc/passwd", "digits_mlp/../../x", "other_model/1"]
)
def test_bad_sources_get_400_and_touch_nothing(repo: Path, server: ServerProcess, source: str) -> None:
    before = tree(repo)
    r = httpx.post(f"{server.management_url}/api/models/digits_mlp/load", json={"source": source}, headers=AUTH)
    assert r.status_code == 400 and r.json()["error"].startswith("source: ")
    assert tree(repo) == before
    assert httpx.get(f"{server.management_url}/api/history", headers=AUTH).json()["records"] == []
    r = httpx.post(f"{server.url}/v2/repository/models/digits_mlp/load", headers=AUTH,
                   json={"parameters": {"file:1/model.onnx": "AAAA"}})  # fmt: skip
    assert r.status_code == 400 and "uploading model files" in r.json()["error"]
    assert tree(repo) == before


def test_deploy_cli(repo: Path, server: ServerProcess) -> None:
    add_version(repo, 2)
    add_broken_version(repo, 3)
    status = deploy(server, "status")
    assert status.returncode == 0, status.stderr
    assert "digits_mlp" in status.stdout and "v1" in status.stdout and "100.0%" in status.stdout
    loaded = deploy(server, "load", "digits_mlp", "2")
    assert loaded.returncode == 0 and "digits_mlp version 2: READY" in loaded.stdout, loaded.stderr
    failed = deploy(server, "load", "digits_mlp", "3")
    assert failed.returncode == 1 and "was not deployed" in failed.stderr and failed.stderr.count("\n") == 1
    bad = deploy(server, "load", "digits_mlp", "../x")
    assert bad.returncode == 2 and "source:" in bad.stderr
    split = deploy(server, "traffic", "digits_mlp", "1=90", "2=10")
    assert split.returncode == 0 and "v1 90%, v2 10%" in split.stdout, split.stderr
    labels = deploy(server, "labels", "digits_mlp", "stable=1", "canary=2")
    assert labels.returncode == 0 and "stable=1, canary=2" in labels.stdout
    r = httpx.get(f"{server.url}/v1/models/digits_mlp/labels/canary")  # TF Serving's label route sees it
    assert r.status_code == 200 and r.json()["model_version_status"][0]["version"] == "2"
    unauthorized = deploy(server, "status", token="nope")
    assert unauthorized.returncode == 2 and "bearer token" in unauthorized.stderr
    history = deploy(server, "history")
    assert history.returncode == 0
    assert "digits_mlp v2  load succeeded" in history.stdout and "digits_mlp v3  load failed" in history.stdout
    command = [sys.executable, "-m", "gateway.cli", "deploy", "--url", "http://127.0.0.1:9", "status"]
    unreachable = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert unreachable.returncode == 2 and "cannot reach the management API" in unreachable.stderr


def test_tritonclient_repository_calls_work_unchanged(server: ServerProcess) -> None:
    script = Path(__file__).with_name("triton_client_script.py")
    run = subprocess.run([sys.executable, str(script), str(server.http), str(server.grpc), TOKEN],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["http_index"] == [{"name": "digits_mlp", "version": "1", "state": "READY"}]
    assert result["grpc_index"] == [{"name": "digits_mlp", "version": "1", "state": "READY"}]
    assert result["http_ready_after_unload"] is False and result["http_ready_after_load"] is True
    assert result["grpc_ready_after_unload"] is False and result["grpc_ready_after_load"] is True
    assert "bearer token" in result["http_no_token"]
    assert result["grpc_no_token"].startswith("StatusCode.UNAUTHENTICATED")
    assert result["grpc_missing_model"].startswith("StatusCode.NOT_FOUND")
    assert "uploading model files" in result["http_upload"]
