"""No orphans: SIGKILL of a real ``modelgate serve`` leaves no TorchServe, TorchServe worker or
TensorFlow worker running, and the next gateway removes the dead one's run directory."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.backends.keras_models import shared_artifacts, write_version
from tests.e2e.server_process import ServerProcess
from tests.processes import alive, cmdline, descendants

pytestmark = [pytest.mark.frameworks, pytest.mark.e2e, pytest.mark.slow]

_DEADLINE = 300.0
TS_CONFIG = """\
backend: torchserve
inputs: [{name: pixels, datatype: FP32, shape: [-1, 64]}]
outputs: [{name: probs, datatype: FP32, shape: [-1, 10]}]
"""


def _torchscript(path: Path) -> Path:
    import torch

    net = torch.nn.Sequential(torch.nn.Linear(64, 10), torch.nn.Softmax(1))
    torch.jit.save(torch.jit.trace(net.eval(), torch.zeros(2, 64)), str(path))  # type: ignore[no-untyped-call]
    return path


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``ts`` (torchserve) and ``tf`` (tensorflow SavedModel in a worker)."""
    root = tmp_path_factory.mktemp("orphans_repo")
    (root / "ts" / "1").mkdir(parents=True)
    (root / "ts" / "config.yaml").write_text(TS_CONFIG)
    _torchscript(root / "ts" / "1" / "model.pt")
    write_version(root, "tf", 1, "tensorflow", shared_artifacts(tmp_path_factory.getbasetemp()).savedmodel)
    (root / "tf" / "config.yaml").write_text("max_queue_size: 100\n")
    return root


def models_ready(server: ServerProcess) -> bool:
    try:
        urls = [f"{server.url}/v2/models/{m}/versions/1/ready" for m in ("ts", "tf")]
        return all(httpx.get(url, timeout=5).status_code == 200 for url in urls)
    except httpx.TransportError:
        return False


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + _DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)  # polling interval, bounded by the deadline above


def test_sigkill_of_the_gateway_leaves_no_child_and_the_next_start_cleans_its_run_dir(repo: Path) -> None:
    # TorchServe's worker sockets live under TMPDIR and AF_UNIX paths are short: not under tmp_path
    tmp = Path(tempfile.mkdtemp(prefix="mg-orphans-"))
    try:
        _sigkill_then_restart(repo, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _sigkill_then_restart(repo: Path, tmp: Path) -> None:
    env = {"TMPDIR": str(tmp)}
    first = ServerProcess(repo, env=env)
    try:
        first.start(timeout=300)
        assert first.proc is not None
        wait_for(lambda: models_ready(first), "both versions to be ready")
        children = descendants(first.proc.pid)
        commands = {pid: cmdline(pid) for pid in children}
        kinds = {
            "keeper": "gateway.backends.worker.keeper",
            "java": "org.pytorch.serve.ModelServer",
            "torchserve worker": "model_service_worker",
            "tensorflow worker": "gateway.backends.worker.main",
        }
        for kind, marker in kinds.items():
            assert any(marker in c for c in commands.values()), f"no {kind} among {commands}"
        (run_dir,) = tmp.glob("modelgate-torchserve-*")
        os.kill(first.proc.pid, signal.SIGKILL)
        first.proc.wait(30)
        wait_for(lambda: not [pid for pid in children if alive(pid)], "the gateway's children to end")
    finally:
        first.close()
    assert run_dir.exists()  # nobody was left to remove it
    second = ServerProcess(repo, env=env)
    try:
        second.start(timeout=300)
        assert second.proc is not None
        wait_for(lambda: models_ready(second), "both versions to be ready again")
        assert not run_dir.exists()  # the new gateway removed the dead one's run directory
        (current,) = tmp.glob("modelgate-torchserve-*")
        assert (current / "owner").read_text().split()[0] == str(second.proc.pid)
    finally:
        second.close()
    assert list(tmp.glob("modelgate-torchserve-*")) == []  # SIGTERM: the run directory goes with the gateway
