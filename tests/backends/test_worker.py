"""Worker processes: the frame format, load failures, and crash -> 503 -> restart -> serving again."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO

import httpx
import numpy as np
import pytest

from gateway.backends.tensorflow import TensorFlowBackend
from gateway.backends.worker import wire
from gateway.backends.worker.supervisor import WorkerParameters, WorkerProcess
from gateway.core.backend import BackendRegistry
from gateway.core.dataplane import DataPlane, ModelRef
from gateway.core.errors import (
    BackendError,
    BackendUnavailable,
    ConfigError,
    ErrorKind,
    InvalidInput,
    ModelNotReady,
)
from gateway.core.models import ModelManager
from gateway.core.repository import ModelRepository
from gateway.core.types import InferRequest, Signature, Tensor, TensorSpec
from gateway.metrics import Metrics
from tests.backends.keras_models import KerasArtifacts, digit_images, shared_artifacts, write_version
from tests.harness import infer_named
from tests.processes import alive

pytestmark = pytest.mark.anyio

_DEADLINE_SECONDS = 120.0


def test_frames_round_trip_every_datatype() -> None:
    tensors: dict[str, np.ndarray] = {
        "f32": np.arange(6, dtype=np.float32).reshape(2, 3),
        "f16": np.array([[1.5, -0.25]], np.float16),
        "u64": np.array([0, 2**64 - 1], np.uint64),
        "i8": np.array([[-128], [127]], np.int8),
        "bool": np.array([True, False]),
        "bytes": np.array([[b"a", b""], [b"\xff\x00", "é".encode()]], dtype=object),
        "empty": np.zeros((0, 4), np.float64),
    }
    frame = wire.encode_frame({"id": 7, "op": "result"}, tensors)
    assert wire.frame_length(frame[: wire.PREFIX_SIZE]) == len(frame) - wire.PREFIX_SIZE
    header, decoded = wire.decode_body(frame[wire.PREFIX_SIZE :])
    assert header == {"id": 7, "op": "result"}
    assert list(decoded) == list(tensors)
    for name, array in tensors.items():
        assert decoded[name].dtype == array.dtype and decoded[name].shape == array.shape
        assert decoded[name].tolist() == array.tolist()


def test_errors_keep_their_kind_across_the_pipe() -> None:
    sent = wire.error_header(3, InvalidInput("input 'x': bad shape"))
    got = wire.error_from_header(wire.decode_body(wire.encode_frame(sent)[wire.PREFIX_SIZE :])[0])
    assert isinstance(got, InvalidInput) and got.message == "input 'x': bad shape"
    crashed = wire.error_from_header(wire.error_header(4, RuntimeError("kernel failed\nlong trace")))
    assert isinstance(crashed, BackendError) and crashed.kind is ErrorKind.INTERNAL
    assert crashed.message == "kernel failed"


def test_signature_survives_json() -> None:
    signature = Signature([TensorSpec("image", "FP32", (-1, 8, 8, 1))], [TensorSpec("p", "BYTES", (-1,))])
    assert wire.signature_from_json(wire.signature_to_json(signature)) == signature


async def test_a_worker_that_cannot_load_reports_why() -> None:
    with pytest.raises(ConfigError, match=r"No module named 'gateway\.backends\.nope'"):
        await WorkerProcess.start("model 'm'", "gateway.backends.nope:Runtime", {}, WorkerParameters())


# -- crash and restart, with the real TensorFlow worker -------------------------------------


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def savedmodel_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    artifacts: KerasArtifacts = shared_artifacts(tmp_path_factory.getbasetemp())
    repo = tmp_path_factory.mktemp("worker_repo")
    write_version(repo, "digits", 1, "tensorflow", artifacts.savedmodel)
    (repo / "digits" / "config.yaml").write_text("max_queue_size: 1000\n", encoding="utf-8")
    write_version(repo, "fragile", 1, "tensorflow", artifacts.savedmodel, "parameters: {max_restarts: 0}\n")
    (repo / "fragile" / "config.yaml").write_text("max_queue_size: 10\n", encoding="utf-8")
    return repo


@pytest.fixture(scope="module")
async def manager(savedmodel_repo: Path) -> AsyncIterator[ModelManager]:
    registry = BackendRegistry()
    registry.register(TensorFlowBackend)
    manager = ModelManager(ModelRepository(savedmodel_repo), registry)
    await manager.load_all()
    yield manager
    await manager.unload_all()


def tf_backend(manager: ModelManager, model: str = "digits") -> TensorFlowBackend:
    backend = manager.resolve(model, "1").backend
    assert isinstance(backend, TensorFlowBackend)
    return backend


async def wait_until_healthy(backend: TensorFlowBackend) -> None:
    deadline = time.monotonic() + _DEADLINE_SECONDS
    while not await backend.health():
        assert time.monotonic() < deadline, "the worker was not restarted in time"
        await asyncio.sleep(0.05)  # polling interval, bounded by the deadline above


def request(n: int) -> InferRequest:
    return InferRequest("digits", [Tensor("image", "FP32", digit_images(n))], model_version="1")


@pytest.mark.frameworks
async def test_killed_worker_fails_requests_with_503_then_serves_again(manager: ModelManager) -> None:
    plane = DataPlane(manager, Metrics())
    backend = tf_backend(manager)
    before = (await infer_named(plane, request(4))).outputs[0].data
    pid = backend.worker_pid
    assert pid is not None and pid != os.getpid()

    in_flight = [asyncio.create_task(infer_named(plane, request(450))) for _ in range(40)]
    done, _ = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
    os.kill(pid, signal.SIGKILL)
    outcomes = await asyncio.gather(*in_flight, return_exceptions=True)
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    assert all(isinstance(f, BackendUnavailable) for f in failures), failures
    assert len(done) >= 1

    with pytest.raises(BackendUnavailable) as refused:
        await infer_named(plane, request(1))
    assert refused.value.kind is ErrorKind.UNAVAILABLE
    await manager.check_health()
    assert not plane.model_ready(ModelRef("digits", "1"))

    await wait_until_healthy(backend)
    await manager.check_health()
    assert plane.model_ready(ModelRef("digits", "1"))
    assert backend.worker_pid not in (None, pid) and backend.restarts == 1
    after = (await infer_named(plane, request(4))).outputs[0].data
    np.testing.assert_array_equal(after, before)


@pytest.mark.frameworks
async def test_restart_budget_spent_leaves_the_version_down(manager: ModelManager) -> None:
    plane = DataPlane(manager, Metrics())
    backend = tf_backend(manager, "fragile")
    pid = backend.worker_pid
    assert pid is not None and backend.supervised
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + _DEADLINE_SECONDS
    while backend.supervised:
        assert time.monotonic() < deadline, "the supervisor neither restarted the worker nor gave up"
        await asyncio.sleep(0.05)  # polling interval, bounded by the deadline above
    assert backend.worker_pid is None and backend.restarts == 0 and not await backend.health()
    await manager.check_health()
    assert not plane.model_ready(ModelRef("fragile", "1"))
    with pytest.raises(ModelNotReady, match="backend health check failed"):
        await infer_named(plane, InferRequest("fragile", [Tensor("image", "FP32", digit_images(1))]))
    assert plane.model_ready(ModelRef("digits", "1"))


@pytest.mark.frameworks
@pytest.mark.slow
async def test_a_worker_over_its_memory_bound_is_replaced_without_failing_requests(
    tmp_path: Path, savedmodel_repo: Path
) -> None:
    """A 1 MB bound: every worker is over it, so it is recycled while 4 clients keep sending requests."""
    repo = tmp_path / "repo"
    write_version(repo, "digits", 1, "tensorflow", savedmodel_repo / "digits" / "1" / "model.savedmodel",
                  "parameters: {max_worker_rss_mb: 1, memory_check_seconds: 0.2}\n")  # fmt: skip
    (repo / "digits" / "config.yaml").write_text("max_queue_size: 1000\n", encoding="utf-8")
    registry = BackendRegistry()
    registry.register(TensorFlowBackend)
    recycling = ModelManager(ModelRepository(repo), registry)
    await recycling.load_all()
    try:
        plane = DataPlane(recycling, Metrics())
        backend = tf_backend(recycling)
        first_pid = backend.worker_pid
        expected = (await infer_named(plane, request(3))).outputs[0].data
        answers: list[np.ndarray] = []
        stop = asyncio.Event()

        async def client() -> None:
            while not stop.is_set():
                answers.append((await infer_named(plane, request(3))).outputs[0].data)  # any failure fails the test

        clients = [asyncio.create_task(client()) for _ in range(4)]
        deadline = time.monotonic() + _DEADLINE_SECONDS * 2
        while backend.recycles < 1 and not any(task.done() for task in clients):
            assert time.monotonic() < deadline, f"no recycling within the deadline ({backend.recycles})"
            await asyncio.sleep(0.05)  # polling interval, bounded by the deadline above
        served = len(answers)
        while len(answers) < served + 20 and not any(task.done() for task in clients):
            assert time.monotonic() < deadline, "requests stopped after the recycling"
            await asyncio.sleep(0.05)  # polling interval, bounded by the deadline above
        stop.set()
        await asyncio.gather(*clients)  # re-raises the first failed request, if any
        assert backend.worker_pid not in (None, first_pid) and backend.restarts == 0
        assert first_pid is not None and not alive(first_pid)
        assert all(np.array_equal(a, expected) for a in answers)
    finally:
        await recycling.unload_all()


# -- the whole gateway (uvloop, HTTP, health loop) with a killed worker ----------------------


def serve_gateway(repo: str) -> None:
    """Entry point of the gateway process under test: ``modelgate serve``'s path, with this registry."""
    import uvloop

    from gateway.server import Gateway
    from gateway.settings import load_settings

    registry = BackendRegistry()
    registry.register(TensorFlowBackend)
    settings = load_settings(
        None, model_repository=Path(repo), host="127.0.0.1", http_port=0, grpc_port=0, metrics_port=0,
        management_port=0, health_check_seconds=0.2, shutdown_grace_seconds=5,
    )  # fmt: skip
    gateway = Gateway(settings, registry)

    async def main() -> None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, gateway.stop)
        await gateway.run()

    logging.basicConfig(level="INFO", stream=sys.stderr)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())


@pytest.fixture(scope="module")
def gateway_process(savedmodel_repo: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    code = f"from tests.backends.test_worker import serve_gateway; serve_gateway({str(savedmodel_repo)!r})"
    process = subprocess.Popen(
        [sys.executable, "-c", code], stderr=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2]
    )
    assert process.stderr is not None
    try:
        url = _listening_url(process.stderr)
        yield process, url
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stderr.close()


def _listening_url(stderr: IO[str]) -> str:
    """Read the gateway's log until the 'listening' line (bounded); keep draining it afterwards."""
    found: list[str] = []
    ready = threading.Event()

    def pump() -> None:
        for line in stderr:
            match = re.search(r"modelgate listening: http=(\S+?):(\d+) ", line)
            if match and not found:
                found.append(f"http://{match[1]}:{match[2]}")
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    ready.wait(_DEADLINE_SECONDS)
    assert found, "the gateway did not log its listening line"
    return found[0]


def _children(pid: int) -> set[int]:
    return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


async def _poll(client: httpx.AsyncClient, path: str, want: int) -> None:
    deadline = time.monotonic() + _DEADLINE_SECONDS
    while (await client.get(path)).status_code != want:
        assert time.monotonic() < deadline, f"GET {path} never answered {want}"
        await asyncio.sleep(0.05)  # polling interval, bounded by the deadline above


@pytest.mark.frameworks
@pytest.mark.e2e
async def test_gateway_answers_503_while_its_worker_restarts(
    gateway_process: tuple[subprocess.Popen[str], str],
) -> None:
    process, url = gateway_process
    images = digit_images(2)
    body = {"inputs": [{"name": "image", "datatype": "FP32", "shape": [2, 8, 8, 1], "data": images.ravel().tolist()}]}
    infer = "/v2/models/digits/versions/1/infer"
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        await _poll(client, "/v2/models/digits/versions/1/ready", 200)
        first = await client.post(infer, json=body)
        assert first.status_code == 200, first.text
        workers = _children(process.pid)
        assert len(workers) == 2  # digits and fragile, one worker per version
        worker = next(pid for pid in workers if _serves(pid, "/digits/"))
        os.kill(worker, signal.SIGKILL)

        refused = await client.post(infer, json=body)
        # 503 from the dead worker's socket, or from the health loop having marked it not ready
        assert refused.status_code == 503, refused.text
        assert re.search(r"worker process|health check failed", refused.json()["error"]), refused.text
        await _poll(client, "/v2/models/digits/versions/1/ready", 503)
        await _poll(client, "/v2/models/digits/versions/1/ready", 200)
        again = await client.post(infer, json=body)
        assert again.status_code == 200 and again.json()["outputs"] == first.json()["outputs"]
    restarted = _children(process.pid)
    assert worker not in restarted and len(restarted) == 2
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    assert not [pid for pid in restarted if Path(f"/proc/{pid}").exists()], "workers outlived the gateway"


def _serves(pid: int, model_path: str) -> bool:
    return model_path in Path(f"/proc/{pid}/cmdline").read_text()
