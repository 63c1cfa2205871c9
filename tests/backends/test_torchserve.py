"""TorchServe backend end to end: real TorchServes (Java 17) started by the gateway's supervisor.

Each managed torchserve version runs in its own locked-down TorchServe (token authorization
on, model API off, loopback only), started when the version loads and stopped by PID when it
unloads, under one run directory per session. The same digits MLP is served as ONNX
(onnxruntime, version 1) and as TorchScript (torchserve, version 2), so answers can be
compared request for request.
"""

from __future__ import annotations

import argparse
import asyncio
import http.server
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import ClassVar

import httpx
import numpy as np
import onnx
import pytest
from sklearn.datasets import load_digits

from demo.digits import load_digits_split
from demo.mlp import Mlp, to_onnx, train
from gateway.backends.onnxruntime import OnnxRuntimeBackend
from gateway.backends.torchserve.backend import TorchServeBackend, TorchServeFactory
from gateway.backends.torchserve.cli import register
from gateway.backends.torchserve.managed import ManagedModel, ManagedTorchServe
from gateway.backends.torchserve.tokens import read_key_file
from gateway.core.backend import BackendRegistry
from gateway.core.dataplane import ModelRef
from gateway.core.errors import BackendError, ConfigError, DeadlineExceeded
from gateway.core.types import InferRequest, InferResponse, Tensor
from gateway.protocols.http_app import HttpApp
from tests.harness import Served, infer_named, loaded

pytestmark = [pytest.mark.anyio, pytest.mark.frameworks, pytest.mark.e2e]

TENSORS = """\
inputs:
  - {name: pixels, datatype: FP32, shape: [-1, 64]}
outputs:
  - {name: probs, datatype: FP32, shape: [-1, 10]}
"""
TS_CONFIG = "backend: torchserve\n" + TENSORS


# -- artifacts (built once per session) ------------------------------------------------------


def _trace(module: object, example: tuple[object, ...], path: Path) -> Path:
    import torch

    assert isinstance(module, torch.nn.Module)
    traced = torch.jit.trace(module.eval(), example)  # type: ignore[no-untyped-call]
    torch.jit.save(traced, str(path))
    return path


def _torch_mlp(mlp: Mlp) -> object:
    """The numpy MLP's exact weights in torch: the TorchScript twin of the ONNX model."""
    import torch

    class DigitsMlp(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.hidden = torch.nn.Linear(64, 32)
            self.out = torch.nn.Linear(32, 10)
            with torch.no_grad():
                self.hidden.weight.copy_(torch.from_numpy(mlp.w1.T.copy()))
                self.hidden.bias.copy_(torch.from_numpy(mlp.b1))
                self.out.weight.copy_(torch.from_numpy(mlp.w2.T.copy()))
                self.out.bias.copy_(torch.from_numpy(mlp.b2))

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            hidden = torch.relu(self.hidden(pixels / 16.0))
            return torch.softmax(self.out(hidden), dim=1)

    return DigitsMlp()


def _mixed_dtypes() -> object:
    """Two inputs of different dtypes and ranks, two outputs: dtype and shape must survive."""
    import torch

    class Mixed(torch.nn.Module):
        def forward(self, counts: torch.Tensor, grid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return counts * 3, grid.sum(dim=2)

    return Mixed()


def _reshaper() -> object:
    """Fails inside the handler for inputs whose size is not a multiple of 5."""
    import torch

    class Reshaper(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.reshape(-1, 5)

    return Reshaper()


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import torch

    out = tmp_path_factory.mktemp("ts_artifacts")
    x_train, y_train, _, _ = load_digits_split(0)
    mlp = train(x_train, y_train, seed=0, epochs=5)
    onnx.save(to_onnx(mlp), out / "digits.onnx")
    return {
        "onnx": out / "digits.onnx",
        "digits": _trace(_torch_mlp(mlp), (torch.zeros(2, 64),), out / "digits.pt"),
        "mixed": _trace(
            _mixed_dtypes(), (torch.zeros(2, 3, dtype=torch.int64), torch.zeros(2, 4, 2, dtype=torch.float64)),
            out / "mixed.pt",
        ),
        "reshaper": _trace(_reshaper(), (torch.zeros(2, 5),), out / "reshaper.pt"),
    }  # fmt: skip


@pytest.fixture(scope="session")
def torchserve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedTorchServe]:
    """The session's managed TorchServes (one per loaded version) under one run directory."""
    managed = ManagedTorchServe(run_dir=tmp_path_factory.mktemp("torchserve_run"))
    yield managed
    assert managed.models == {}  # every version unloaded: every TorchServe stopped


def write_repo(
    repo: Path, artifacts: dict[str, Path], timeout_seconds: float = 30.0, extra: str = "", digits_ts: bool = True
) -> Path:
    """``digits``: v1 ONNX (onnxruntime), v2 TorchScript (torchserve) unless not ``digits_ts``; plus ``extra``."""
    digits = repo / "digits"
    (digits / "1").mkdir(parents=True)
    (digits / "config.yaml").write_text(
        f"version_policy: {{all: true}}\ntimeout_seconds: {timeout_seconds}\nmax_batch_size: 64\n{TENSORS}"
    )
    (digits / "1" / "config.yaml").write_text("backend: onnxruntime\n")
    (digits / "1" / "model.onnx").write_bytes(artifacts["onnx"].read_bytes())
    if digits_ts:
        (digits / "2").mkdir()
        (digits / "2" / "config.yaml").write_text("backend: torchserve\n")
        (digits / "2" / "model.pt").write_bytes(artifacts["digits"].read_bytes())
    if extra == "mixed":
        _write_ts_model(repo / "mixed", artifacts["mixed"], """\
backend: torchserve
inputs:
  - {name: counts, datatype: INT64, shape: [-1, 3]}
  - {name: grid, datatype: FP64, shape: [-1, 4, 2]}
outputs:
  - {name: tripled, datatype: INT64, shape: [-1, 3]}
  - {name: row_sums, datatype: FP64, shape: [-1, 4]}
""")  # fmt: skip
    if extra == "reshaper":
        _write_ts_model(repo / "reshaper", artifacts["reshaper"], """\
backend: torchserve
inputs: [{name: x, datatype: FP32, shape: [-1, -1]}]
outputs: [{name: y, datatype: FP32, shape: [-1, 5]}]
""")  # fmt: skip
    return repo


def test_package_command_writes_a_mar_with_the_handler(tmp_path: Path, artifacts: dict[str, Path]) -> None:
    repo = write_repo(tmp_path / "repo", artifacts)
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(sys_args(repo, tmp_path))
    assert args.func(args) == 0
    with zipfile.ZipFile(tmp_path / "digits_v2.mar") as mar:
        names = set(mar.namelist())
        manifest = json.loads(mar.read("MAR-INF/MANIFEST.json"))
    assert {"model.pt", "handler.py", "frames.py"} <= names
    assert manifest["model"]["modelVersion"] == "2" and manifest["model"]["handler"] == "handler.py"
    with pytest.raises(ConfigError, match="no valid version 5"):
        args.func(parser.parse_args([*sys_args(repo, tmp_path), "--version", "5"]))


def sys_args(repo: Path, export: Path) -> list[str]:
    return ["torchserve-package", "--model-repository", str(repo), "--model", "digits", "--export-path", str(export)]


def _write_ts_model(path: Path, artifact: Path, config: str) -> None:
    (path / "1").mkdir(parents=True)
    (path / "config.yaml").write_text(config)
    (path / "1" / "model.pt").write_bytes(artifact.read_bytes())


@asynccontextmanager
async def serving(repo: Path, torchserve: ManagedTorchServe) -> AsyncIterator[Plane]:
    registry = BackendRegistry()
    registry.register(OnnxRuntimeBackend)
    registry.register(TorchServeBackend, TorchServeFactory(torchserve))
    async with loaded(repo, registry) as served:
        yield Plane(served)


class Plane:
    """The served repository as these tests use it: inference and readiness by model name and version."""

    def __init__(self, served: Served) -> None:
        self.dataplane = served.dataplane
        self.manager = served.manager
        self.metrics = served.metrics
        self._served = served

    async def infer(self, request: InferRequest) -> InferResponse:
        return await infer_named(self.dataplane, request)

    def model_ready(self, name: str, version: str) -> bool:
        return self.dataplane.model_ready(ModelRef(name, version))

    def repository_index(self) -> list[dict[str, object]]:
        return self.dataplane.repository_index()

    def http_app(self) -> HttpApp:
        return self._served.http_app(1 << 20)


def digits_request(version: str, rows: int) -> InferRequest:
    pixels = load_digits().data[:rows].astype(np.float32)
    return InferRequest("digits", [Tensor("pixels", "FP32", pixels)], model_version=version)


async def poll(condition: Callable[[], Awaitable[bool]], timeout: float, what: str, state: object = None) -> None:
    """Wait until ``condition`` holds, bounded by ``timeout`` (no fixed sleeps); ``state`` is shown on failure."""
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what} ({state})")
        await asyncio.sleep(0.05)


def instance(plane: Plane, model: str = "digits", version: str = "2") -> ManagedModel:
    """The managed TorchServe that serves one version."""
    backend = plane.manager.resolve(model, version).backend
    assert isinstance(backend, TorchServeBackend) and backend.instance is not None
    return backend.instance


def java_pid(plane: Plane) -> int:
    pid = instance(plane).process.pid
    assert pid is not None
    return pid


# -- tests -------------------------------------------------------------------------------------


async def test_torchserve_answers_like_onnxruntime(
    tmp_path: Path, artifacts: dict[str, Path], torchserve: ManagedTorchServe
) -> None:
    async with serving(write_repo(tmp_path, artifacts), torchserve) as plane:
        assert plane.model_ready("digits", "2"), plane.repository_index()
        for rows in (1, 7, 64):
            via_ort = (await plane.infer(digits_request("1", rows))).outputs[0].data
            via_ts = (await plane.infer(digits_request("2", rows))).outputs[0].data
            assert via_ts.dtype == np.float32 and via_ts.shape == (rows, 10)
            np.testing.assert_allclose(via_ts, via_ort, atol=1e-5)


async def test_dtype_and_shape_survive_the_round_trip(
    tmp_path: Path, artifacts: dict[str, Path], torchserve: ManagedTorchServe
) -> None:
    counts = np.arange(21, dtype=np.int64).reshape(7, 3) - 10**12
    grid = np.linspace(-1, 1, 56).reshape(7, 4, 2)
    request = InferRequest("mixed", [Tensor("counts", "INT64", counts), Tensor("grid", "FP64", grid)])
    async with serving(write_repo(tmp_path, artifacts, extra="mixed", digits_ts=False), torchserve) as plane:
        response = await plane.infer(request)
    tripled, row_sums = (t.data for t in response.outputs)
    assert tripled.dtype == np.int64 and tripled.shape == (7, 3)
    np.testing.assert_array_equal(tripled, counts * 3)  # exact: no float round trip for int64
    assert row_sums.dtype == np.float64 and row_sums.shape == (7, 4)
    np.testing.assert_array_equal(row_sums, grid.sum(axis=2))


async def test_handler_error_is_a_backend_error_not_unavailable(
    tmp_path: Path, artifacts: dict[str, Path], torchserve: ManagedTorchServe
) -> None:
    bad = InferRequest("reshaper", [Tensor("x", "FP32", np.ones((1, 7), np.float32))])
    good = InferRequest("reshaper", [Tensor("x", "FP32", np.ones((2, 5), np.float32))])
    async with serving(write_repo(tmp_path, artifacts, extra="reshaper", digits_ts=False), torchserve) as plane:
        with pytest.raises(BackendError, match="reshape"):
            await plane.infer(bad)
        assert (await plane.infer(good)).outputs[0].data.shape == (2, 5)  # the worker survived


async def test_external_torchserve_with_a_token(
    tmp_path: Path, artifacts: dict[str, Path], torchserve: ManagedTorchServe
) -> None:
    """External mode against the gateway's own TorchServe: its key file works, a wrong token is refused."""
    async with serving(write_repo(tmp_path / "managed", artifacts), torchserve) as managed_plane:
        served = instance(managed_plane)
        key_file = served.process.key_file
        external = tmp_path / "external"
        urls = f"url: '{served.inference_url}', management_url: '{served.management_url}', model_name: {served.name}"
        _write_ts_model(
            external / "ext", artifacts["digits"], TS_CONFIG + f"parameters: {{{urls}, token_file: '{key_file}'}}\n"
        )
        _write_ts_model(external / "wrong", artifacts["digits"], TS_CONFIG + (
            f"parameters: {{url: '{served.inference_url}', model_name: {served.name}, token: not-the-key}}\n"
        ))  # fmt: skip
        pixels = load_digits().data[:3].astype(np.float32)
        async with serving(external, torchserve) as plane:
            assert plane.model_ready("ext", "1"), plane.repository_index()
            response = await plane.infer(InferRequest("ext", [Tensor("pixels", "FP32", pixels)]))
            assert response.outputs[0].data.shape == (3, 10)
            (wrong,) = [v for v in plane.repository_index() if v["name"] == "wrong"]
            assert wrong["state"] == "UNAVAILABLE" and "does not serve" in wrong["reason"], wrong
            assert "not-the-key" not in json.dumps(plane.repository_index())


class _CountingHandler(http.server.BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.hits.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"not really a model archive")

    def log_message(self, *args: object) -> None:
        pass


def _listening(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket ``pid`` listens on, from /proc (IPv4 and IPv6)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A = LISTEN
                address, port = fields[1].split(":")
                found.add((socket.inet_ntop(socket.AF_INET if table == "tcp" else socket.AF_INET6,
                                            _proc_address(address)), int(port, 16)))  # fmt: skip
    return found


def _proc_address(hex_address: str) -> bytes:
    raw = bytes.fromhex(hex_address)
    return b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))  # /proc prints 32-bit words host-order


async def test_managed_torchserve_is_locked_down(
    tmp_path: Path, artifacts: dict[str, Path], torchserve: ManagedTorchServe
) -> None:
    """Token auth on (0600 key file), model API off, every port on loopback; inference still works."""
    hits: list[str] = []
    handler = type("Handler", (_CountingHandler,), {"hits": hits})
    archive_server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=archive_server.serve_forever, daemon=True).start()
    mar_url = f"http://127.0.0.1:{archive_server.server_address[1]}/evil.mar"
    try:
        async with serving(write_repo(tmp_path, artifacts), torchserve) as plane:
            served = instance(plane)
            assert stat.S_IMODE(served.process.key_file.stat().st_mode) == 0o600
            assert stat.S_IMODE(served.directory.stat().st_mode) == 0o700
            keys = read_key_file(served.process.key_file)
            management = served.management_url
            async with httpx.AsyncClient(timeout=30) as client:
                attempts = [
                    await client.put(
                        f"{management}/models/{served.name}", params={"min_worker": 0, "synchronous": "true"}
                    ),
                    await client.post(f"{management}/models", params={"url": mar_url, "initial_workers": 1}),
                    await client.delete(f"{management}/models/{served.name}"),
                    await client.get(f"{served.inference_url}/ping"),
                    await client.put(
                        f"{management}/models/{served.name}",
                        params={"min_worker": 0},
                        headers={"Authorization": "Bearer guessed"},
                    ),
                ]
                with_key = await client.post(f"{management}/models", params={"url": mar_url},
                                             headers={"Authorization": f"Bearer {keys.management}"})  # fmt: skip
            for refused in attempts:
                assert refused.status_code == 400 and refused.json()["type"] == "InvalidKeyException", refused.text
            assert with_key.status_code == 405, with_key.text  # model API off: not even the key can register
            assert hits == []  # TorchServe never fetched the archive
            assert await served.is_ready(10.0)  # still has its worker
            response = await plane.infer(digits_request("2", 3))
            assert response.outputs[0].data.shape == (3, 10)
            pid = java_pid(plane)
            listening = _listening(pid)
            assert len(listening) == 5, listening  # REST, management, metrics, gRPC inference and management
            assert {address for address, _ in listening} <= {"127.0.0.1", "::ffff:127.0.0.1"}, listening
            config = (served.directory / "config.properties").read_text()
            assert "enable_model_api=false" in config and "disable_token_authorization=false" in config
            assert f"allowed_urls=file://\\\\Q{served.process.model_store}\\\\E/" in config
    finally:
        archive_server.shutdown()
        archive_server.server_close()


async def test_expired_keys_are_renewed(tmp_path: Path, artifacts: dict[str, Path]) -> None:
    """Keys that live 3 s: once the first one is refused, inference through the gateway still works."""
    managed = ManagedTorchServe(run_dir=tmp_path / "run", token_expiration_min=0.05)
    async with serving(write_repo(tmp_path / "repo", artifacts), managed) as plane:
        served = instance(plane)
        first = read_key_file(served.process.key_file).inference
        await plane.infer(digits_request("2", 1))

        async def first_key_refused() -> bool:
            async with httpx.AsyncClient(timeout=10) as client:
                ping = await client.get(f"{served.inference_url}/ping", headers={"Authorization": f"Bearer {first}"})
            return ping.status_code == 400

        await poll(first_key_refused, 60.0, "TorchServe to expire the first inference key")
        for _ in range(3):
            assert (await plane.infer(digits_request("2", 2))).outputs[0].data.shape == (2, 10)
        assert served.keys.renewals >= 1 and served.keys.keys.inference != first
        await plane.manager.check_health()  # the health check renews too, and still sees the worker
        assert plane.model_ready("digits", "2")


async def test_sigstop_gives_504_at_the_deadline(
    tmp_path: Path, artifacts: dict[str, Path], torchserve: ManagedTorchServe
) -> None:
    async with serving(write_repo(tmp_path, artifacts, timeout_seconds=1.0), torchserve) as plane:

        async def answers() -> bool:
            try:
                await plane.infer(digits_request("2", 2))
            except DeadlineExceeded:
                return False
            return True

        # Warm the connection and TorchServe's first calls, which on a busy machine can exceed the 1 s deadline.
        await poll(answers, 60.0, "a warm TorchServe answering within the deadline")
        pid = java_pid(plane)
        os.kill(pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(DeadlineExceeded, match="1 s"):
                await plane.infer(digits_request("2", 2))
            elapsed = time.monotonic() - started
        finally:
            os.kill(pid, signal.SIGCONT)
        assert elapsed < 10.0  # answered at the deadline, not hung (generous bound, not a perf figure)
        await poll(answers, 60.0, "TorchServe to answer again after SIGCONT")


async def test_sigkill_under_load_gives_only_200_503_504_and_recovers(
    tmp_path: Path, artifacts: dict[str, Path], torchserve: ManagedTorchServe
) -> None:
    async with serving(write_repo(tmp_path, artifacts, timeout_seconds=5.0), torchserve) as plane:
        app = plane.http_app()
        body = {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [2, 64],
                            "data": load_digits().data[:2].ravel().tolist()}]}  # fmt: skip
        statuses: Counter[int] = Counter()
        sent = 0
        stop = asyncio.Event()
        transport = httpx.ASGITransport(app=app)

        async def client_loop() -> None:
            nonlocal sent
            async with httpx.AsyncClient(transport=transport, base_url="http://gw", timeout=30.0) as client:
                while not stop.is_set():
                    sent += 1
                    response = await client.post("/v2/models/digits/versions/2/infer", json=body)
                    statuses[response.status_code] += 1
                    await asyncio.sleep(0)  # fast in-process answers must not starve the other tasks

        async def model_ready(expected: bool) -> bool:
            await plane.manager.check_health()
            return plane.model_ready("digits", "2") is expected

        loaders = [asyncio.create_task(client_loop()) for _ in range(8)]
        await poll(lambda: _at_least(statuses, 200, 20), 60.0, "load to reach TorchServe", statuses)
        served = instance(plane)
        pid = java_pid(plane)
        restarts_before = served.restarts
        os.kill(pid, signal.SIGKILL)
        await poll(lambda: model_ready(False), 30.0, "readiness to flip to not ready", statuses)
        await poll(lambda: model_ready(True), 180.0, "TorchServe restart and readiness recovery", statuses)
        assert served.process.pid != pid and served.restarts == restarts_before + 1
        ok_before = statuses[200]
        await poll(lambda: _at_least(statuses, 200, ok_before + 10), 60.0, "requests to succeed again", statuses)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*loaders), 60.0)

    assert set(statuses) <= {200, 503, 504}, statuses
    assert sum(statuses.values()) == sent  # none lost: every request got an answer
    assert statuses[503] + statuses[504] > 0, statuses  # the kill was seen by clients


async def _at_least(statuses: Counter[int], status: int, count: int) -> bool:
    return statuses[status] >= count


GATEWAY_CHILD = """\
import asyncio, logging, signal, sys
from pathlib import Path
from gateway.backends.onnxruntime import OnnxRuntimeBackend
from gateway.backends.torchserve.backend import TorchServeBackend, TorchServeFactory
from gateway.backends.torchserve.managed import ManagedTorchServe
from gateway.core.backend import BackendRegistry
from gateway.server import Gateway
from gateway.settings import Settings

logging.basicConfig(level=logging.INFO)  # the "listening" line names the ports the kernel chose
repo, run_dir = sys.argv[1], sys.argv[2]
registry = BackendRegistry()
registry.register(OnnxRuntimeBackend)
registry.register(TorchServeBackend, TorchServeFactory(ManagedTorchServe(run_dir=Path(run_dir))))
gateway = Gateway(Settings(model_repository=repo, http_port=0, grpc_port=0, metrics_port=0, management_port=0,
                           health_check_seconds=0.5), registry)

async def main():
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, gateway.stop)
    await gateway.run()

asyncio.run(main())
"""


_LISTENING = re.compile(r"modelgate listening: http=[^:]+:(\d+) ")


def _http_port(log: Path, child: subprocess.Popen[bytes], deadline: float) -> int:
    """The REST port the child's gateway bound (port 0: the kernel picks a free one, no race)."""
    while not (found := _LISTENING.search(log.read_text(errors="replace"))):
        assert child.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, "gateway with TorchServe did not bind in 180 s"
        time.sleep(0.2)  # polling interval, bounded by the deadline
    return int(found.group(1))


def _processes_mentioning(text: str) -> list[int]:
    """PIDs whose command line contains ``text`` (TorchServe's Java and workers name the run dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_gateway_process_serves_torchserve_and_sigterm_stops_it(tmp_path: Path, artifacts: dict[str, Path]) -> None:
    """A real gateway process: serves v2 through its managed TorchServe; SIGTERM leaves nothing running."""
    repo = write_repo(tmp_path / "repo", artifacts)
    # TorchServe's worker sockets live under the run dir and AF_UNIX paths are short: not under tmp_path,
    # which xdist makes too deep
    run_dir = Path(tempfile.mkdtemp(prefix="mg-ts-"))
    try:
        _serve_and_stop(repo, run_dir, tmp_path / "gateway.log")
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def _serve_and_stop(repo: Path, run_dir: Path, log: Path) -> None:
    with log.open("wb") as sink:
        child = subprocess.Popen([sys.executable, "-c", GATEWAY_CHILD, str(repo), str(run_dir)], stdout=sink,
                                 stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        base = f"http://127.0.0.1:{_http_port(log, child, deadline)}"
        while not _ready(f"{base}/v2/models/digits/versions/2/ready"):
            assert child.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "gateway with TorchServe did not become ready in 180 s"
            time.sleep(0.2)  # polling interval, bounded by the deadline
        x = load_digits().data[:3]
        body = {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [3, 64], "data": x.ravel().tolist()}]}
        answers = [httpx.post(f"{base}/v2/models/digits/versions/{v}/infer", json=body, timeout=30) for v in "12"]
        assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
        ort, ts = (np.asarray(a.json()["outputs"][0]["data"], np.float32) for a in answers)
        np.testing.assert_allclose(ts, ort, atol=1e-5)
        assert _processes_mentioning(str(run_dir))  # TorchServe runs under the gateway
    finally:
        child.send_signal(signal.SIGTERM)
        code = child.wait(120)
    assert code == 0, log.read_text()[-3000:]
    assert _processes_mentioning(str(run_dir)) == []  # Java and its workers were stopped


def _ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False
