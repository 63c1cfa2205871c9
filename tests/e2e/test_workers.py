"""``modelgate serve --workers 2`` as real processes: one scrape counts every request, a SIGKILLed
worker is replaced while the others keep serving, and no worker outlives its supervisor.

A scrape shows the other workers' request counts as of their last flush (``FLUSH_SECONDS``), so the
tests that read totals poll the scrape until it shows them (bounded by ``_DEADLINE``)."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from gateway.protos import open_inference_grpc_pb2 as pb
from gateway.protos import open_inference_grpc_pb2_grpc as pb_grpc
from tests.e2e.server_process import ServerProcess
from tests.processes import alive, cmdline, parents

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

_DEADLINE = 300.0
_CHILD = "gateway.multiprocess.child"
_DOC = {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": [0.5] * 64}]}


def workers(server: ServerProcess) -> set[int]:
    """The running serving processes of the supervisor ``server``."""
    assert server.proc is not None
    supervisor = server.proc.pid
    return {pid for pid, parent in parents().items() if parent == supervisor and _CHILD in cmdline(pid)}


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + _DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)  # polling interval, bounded by the deadline above


def ready(server: ServerProcess) -> bool:
    try:
        return httpx.get(f"{server.url}/v2/health/ready", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def send_rest(server: ServerProcess, connections: int, per_connection: int) -> None:
    """``connections`` clients (a connection each, so the kernel spreads them over the workers)."""
    for _ in range(connections):
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for _ in range(per_connection):
                r = client.post("/v2/models/digits_mlp/infer", json=_DOC)
                assert r.status_code == 200, r.text


def send_grpc(server: ServerProcess, channels: int, per_channel: int) -> None:
    x = np.full((1, 64), 0.5, np.float32)
    for _ in range(channels):
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc}") as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            for _ in range(per_channel):
                request = pb.ModelInferRequest(model_name="digits_mlp", raw_input_contents=[x.tobytes()])
                request.inputs.add(name="pixels", datatype="FP32", shape=[1, 64])
                assert stub.ModelInfer(request, timeout=30).outputs[0].shape == [1, 10]


def totals(server: ServerProcess) -> dict[str, float]:
    """One scrape: requests answered and timed for digits_mlp, by protocol."""
    return counted(httpx.get(f"http://127.0.0.1:{server.metrics}/metrics", timeout=30).text)


def counted(text: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("model") != "digits_mlp":
                continue
            if sample.name == "modelgate_requests_total":
                key = sample.labels["protocol"]
            elif sample.name == "modelgate_request_duration_seconds_count":
                key = f"{sample.labels['protocol']} timed"
            else:
                continue
            found[key] = found.get(key, 0.0) + sample.value
    return found


@pytest.fixture(scope="module")
def repo(demo_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("workers_repo")
    shutil.copytree(demo_repo / "digits_mlp", root / "digits_mlp")
    return root


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[ServerProcess]:
    with ServerProcess(repo, "--workers", "2") as proc:
        wait_for(lambda: len(workers(proc)) == 2, "two workers")
        yield proc


def test_one_scrape_counts_every_request_and_a_killed_worker_is_replaced(server: ServerProcess) -> None:
    send_rest(server, connections=16, per_connection=10)
    send_grpc(server, channels=8, per_channel=5)
    counted = {"rest": 160, "rest timed": 160, "grpc": 40, "grpc timed": 40}
    wait_for(lambda: totals(server) == counted, f"one scrape to show {counted}")  # the other worker's next flush

    before = workers(server)
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: not alive(victim), "the killed worker to end")
    send_rest(server, connections=10, per_connection=1)  # new connections go to the worker left
    wait_for(lambda: len(workers(server)) == 2 and victim not in workers(server), "a replacement worker")
    wait_for(lambda: ready(server), "the gateway to be ready again")
    assert before - {victim} <= workers(server)  # the other worker was left alone
    death = server.wait_for_log(f"(pid {victim}) ended (signal 9): starting a replacement")
    index = death.split("modelgate worker ", 1)[1].split(" ", 1)[0]  # "0/2" or "1/2"
    listening = f"modelgate worker {index} listening"
    wait_for(lambda: listening in server.log().split(death, 1)[1], "the replacement's log lines")
    # The replacement joined the shared ports only once its model was loaded: until then the kernel
    # handed every new connection to the worker left (its lines after the death notice, in order).
    after = server.log().split(death, 1)[1]
    assert after.index("model digits_mlp version 1 is ready") < after.index(listening)

    send_rest(server, connections=16, per_connection=5)
    counted = {"rest": 250, "rest timed": 250, "grpc": 40, "grpc timed": 40}  # with the dead one's count
    wait_for(lambda: totals(server) == counted, f"one scrape to show {counted}")


def test_each_worker_adds_its_counts_to_the_shared_files_by_itself(repo: Path) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="mg-workers-"))
    try:
        with ServerProcess(repo, "--workers", "2", env={"TMPDIR": str(tmp)}) as server:
            wait_for(lambda: len(workers(server)) == 2, "two workers")
            (run_dir,) = tmp.glob("modelgate-workers-*")
            send_rest(server, connections=16, per_connection=3)

            def in_files() -> dict[str, float]:  # what a scrape would sum, read without scraping any worker
                registry = CollectorRegistry()
                MultiProcessCollector(registry, str(run_dir / "metrics"))  # type: ignore[no-untyped-call]
                return counted(generate_latest(registry).decode())

            wait_for(lambda: in_files() == {"rest": 48, "rest timed": 48}, "both workers' periodic flush")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def grpc_server_ready(server: ServerProcess) -> bool:
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc}") as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        return bool(stub.ServerReady(pb.ServerReadyRequest(), timeout=30).ready)


def test_a_dead_worker_makes_the_gateway_not_ready_until_it_is_replaced(server: ServerProcess) -> None:
    wait_for(lambda: ready(server) and len(workers(server)) == 2, "two ready workers")
    assert grpc_server_ready(server)
    assert server.proc is not None
    supervisor = server.proc.pid
    os.kill(supervisor, signal.SIGSTOP)  # no replacement can start while we look
    try:
        victim = min(workers(server))
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: not alive(victim), "the killed worker to end")
        r = httpx.get(f"{server.url}/v2/health/ready", timeout=30)  # answered by the worker left
        assert (r.status_code, r.json()) == (503, {"ready": False})
        assert not grpc_server_ready(server)
        assert httpx.get(f"{server.url}/v2/health/live", timeout=30).status_code == 200
    finally:
        os.kill(supervisor, signal.SIGCONT)
    wait_for(lambda: ready(server) and len(workers(server)) == 2, "the replacement to be ready")
    assert grpc_server_ready(server)


def test_load_and_unload_are_refused_and_management_is_served(server: ServerProcess) -> None:
    for path in ("load", "unload"):
        r = httpx.post(f"{server.url}/v2/repository/models/digits_mlp/{path}", timeout=30)
        assert r.status_code == 409 and "workers > 1" in r.json()["error"], r.text
        r = httpx.post(f"{server.management_url}/api/models/digits_mlp/{path}", json={}, timeout=30)
        assert r.status_code == 409 and r.json()["error"].startswith(f"{path}: not available with workers > 1")
    models = httpx.get(f"{server.management_url}/api/models", timeout=30).json()["models"]
    assert [m["name"] for m in models] == ["digits_mlp"]
    assert httpx.post(f"{server.url}/v2/models/digits_mlp/infer", json=_DOC, timeout=30).status_code == 200


def test_sigkill_of_the_supervisor_leaves_no_worker_and_sigterm_cleans_up(repo: Path) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="mg-workers-"))
    try:
        _sigkill_then_sigterm(repo, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _sigkill_then_sigterm(repo: Path, tmp: Path) -> None:
    env = {"TMPDIR": str(tmp)}
    first = ServerProcess(repo, "--workers", "2", env=env)
    try:
        first.start(timeout=_DEADLINE)
        wait_for(lambda: len(workers(first)) == 2, "two workers")
        children = workers(first)
        (run_dir,) = tmp.glob("modelgate-workers-*")
        assert first.proc is not None
        os.kill(first.proc.pid, signal.SIGKILL)
        first.proc.wait(60)
        wait_for(lambda: not any(alive(pid) for pid in children), "the workers to end with their supervisor")
    finally:
        first.close()
    assert run_dir.exists()  # nobody was left to remove it

    second = ServerProcess(repo, "--workers", "2", env=env)
    with second:
        wait_for(lambda: len(workers(second)) == 2, "two workers")
        assert not run_dir.exists()  # the next gateway removed the dead one's run directory
        children = workers(second)
        assert second.terminate() == 0
    assert not any(alive(pid) for pid in children)
    assert not list(tmp.glob("modelgate-workers-*"))


@pytest.mark.parametrize("value", ["0", "-2", "many"])
def test_a_bad_workers_value_is_refused_in_one_line(repo: Path, value: str) -> None:
    code, stderr = ServerProcess(repo, "--workers", value).run_to_exit()
    assert code == 2
    assert stderr.strip().count("\n") == 0 and "workers" in stderr and "whole number >= 1 or 'auto'" in stderr


def _versions_answering(server: ServerProcess, connections: int) -> set[str]:
    """The versions that answer unpinned requests on ``connections`` new connections."""
    seen = set()
    for _ in range(connections):
        with httpx.Client(base_url=server.url, timeout=30) as client:
            r = client.post("/v2/models/digits_mlp/infer", json=_DOC)
            assert r.status_code == 200, r.text
            seen.add(r.json()["model_version"])
    return seen


def test_a_traffic_split_set_on_the_management_port_reaches_every_worker(repo: Path, tmp_path: Path) -> None:
    two = tmp_path / "repo"
    shutil.copytree(repo / "digits_mlp", two / "digits_mlp")
    shutil.copytree(two / "digits_mlp" / "1", two / "digits_mlp" / "2")
    config = two / "digits_mlp" / "config.yaml"
    config.write_text(config.read_text().replace("version_policy: {latest: 1}", "version_policy: {latest: 2}"))
    env = {"MODELGATE_DEPLOYMENT_POLL_SECONDS": "0.2"}
    with ServerProcess(two, "--workers", "2", env=env) as server:
        wait_for(lambda: len(workers(server)) == 2, "two workers")
        assert _versions_answering(server, 16) == {"2"}  # the latest version is the default
        r = httpx.put(f"{server.management_url}/api/models/digits_mlp/traffic",
                      json={"weights": {"1": 100, "2": 0}}, timeout=30)  # fmt: skip
        assert r.status_code == 200, r.text
        # worker 0 applied it at once; the other worker follows at its next poll of the repository state
        wait_for(lambda: _versions_answering(server, 16) == {"1"}, "every worker to send traffic to version 1")


def test_the_management_token_reaches_every_worker_and_never_the_disk(repo: Path) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="mg-workers-"))
    token = "workers-token-5f2c9e"
    try:
        with ServerProcess(repo, "--workers", "2", env={"TMPDIR": str(tmp), "MODELGATE_MANAGEMENT_TOKEN": token}) as s:
            wait_for(lambda: len(workers(s)) == 2, "two workers")
            auth = {"Authorization": f"Bearer {token}"}
            assert httpx.get(f"{s.management_url}/api/models", timeout=30).status_code == 401
            assert httpx.get(f"{s.management_url}/api/models", headers=auth, timeout=30).status_code == 200
            for _ in range(8):  # new connections, spread over both workers: each one knows the token
                url = f"{s.url}/v2/repository/models/digits_mlp/load"
                assert httpx.post(url, timeout=30).status_code == 401
                assert httpx.post(url, headers=auth, timeout=30).status_code == 409
            (run_dir,) = tmp.glob("modelgate-workers-*")
            for path in run_dir.rglob("*"):
                if path.is_file():
                    assert token.encode() not in path.read_bytes(), path.name
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
