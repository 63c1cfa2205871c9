"""The keeper (a process tree that dies with the gateway), run-directory ownership and key files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.backends.torchserve.rundir import PREFIX, clean_stale_run_dirs, make_run_dir, owner_alive
from gateway.backends.torchserve.tokens import ManagedKeys, read_key_file
from gateway.backends.worker.keeper import Lifeline, child_env, keeper_command
from gateway.core.errors import ConfigError

_DEADLINE = 60.0
#: A command with a child of its own in its process group, like Java and its Python workers.
PARENT_WITH_CHILD = [
    sys.executable, "-c",
    "import subprocess, sys, time; c = subprocess.Popen(['sleep', '300']); print(c.pid, flush=True); time.sleep(300)",
]  # fmt: skip


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def _wait_gone(pids: list[int]) -> None:
    deadline = time.monotonic() + _DEADLINE
    while any(_alive(p) for p in pids):
        assert time.monotonic() < deadline, f"still running: {[p for p in pids if _alive(p)]}"
        time.sleep(0.05)  # polling interval, bounded by the deadline above


def _start_keeper(tmp_path: Path) -> tuple[subprocess.Popen[bytes], Lifeline, int, int]:
    lifeline = Lifeline()
    log = tmp_path / "child.log"
    keeper = subprocess.Popen(
        keeper_command(lifeline, log, PARENT_WITH_CHILD, stop_grace=5), env=child_env(),
        stdout=subprocess.PIPE, pass_fds=[lifeline.read_fd],
    )  # fmt: skip
    lifeline.spawned()
    assert keeper.stdout is not None
    command_pid = int(keeper.stdout.readline())
    keeper.stdout.close()  # the keeper writes only that line
    deadline = time.monotonic() + _DEADLINE
    while not log.read_text().strip():
        assert time.monotonic() < deadline, "the command did not start its child"
        time.sleep(0.05)  # polling interval, bounded by the deadline above
    grandchild = int(log.read_text().split()[0])
    assert _alive(command_pid) and _alive(grandchild)
    assert os.getpgid(grandchild) == command_pid  # one process group, led by the command
    return keeper, lifeline, command_pid, grandchild


def test_a_broken_lifeline_kills_the_whole_group(tmp_path: Path) -> None:
    """What happens when the gateway dies: the kernel closes its end of the lifeline."""
    keeper, lifeline, command_pid, grandchild = _start_keeper(tmp_path)
    lifeline.cut()
    assert keeper.wait(_DEADLINE) == 1
    _wait_gone([command_pid, grandchild])


def test_sigterm_stops_the_command_and_its_children(tmp_path: Path) -> None:
    keeper, lifeline, command_pid, grandchild = _start_keeper(tmp_path)
    keeper.terminate()
    assert keeper.wait(_DEADLINE) == 0
    _wait_gone([command_pid, grandchild])
    lifeline.cut()


def test_the_keeper_ends_with_its_command(tmp_path: Path) -> None:
    keeper, lifeline, command_pid, grandchild = _start_keeper(tmp_path)
    os.kill(command_pid, 9)
    assert keeper.wait(_DEADLINE) == 137
    _wait_gone([grandchild])  # the command's leftover child went with its group
    lifeline.cut()


def test_stale_run_dirs_of_dead_gateways_are_removed(tmp_path: Path) -> None:
    ended = subprocess.Popen(["true"])
    ended.wait()
    stale = tmp_path / f"{PREFIX}stale"
    stale.mkdir()
    (stale / "owner").write_text(f"{ended.pid} 12345\n")
    mine = make_run_dir(tmp_path)
    unrelated = tmp_path / "something-else"
    unrelated.mkdir()
    assert owner_alive(mine) and not owner_alive(stale)
    assert clean_stale_run_dirs(tmp_path) == []  # make_run_dir cleaned already
    assert not stale.exists() and mine.exists() and unrelated.exists()
    assert (mine.stat().st_mode & 0o777) == 0o700


def test_key_files_are_read_and_judged_stale(tmp_path: Path) -> None:
    path = tmp_path / "key_file.json"
    soon = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() + 60)) + ".123456789Z"
    later = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() + 3000)) + ".5Z"
    path.write_text(json.dumps({
        "management": {"key": "m-key", "expiration time": later},
        "inference": {"key": "i-key", "expiration time": soon},
        "API": {"key": "a-key"},
    }))  # fmt: skip
    keys = read_key_file(path)
    assert (keys.inference, keys.management, keys.api) == ("i-key", "m-key", "a-key")
    assert "i-key" not in repr(keys)
    managed = ManagedKeys(path, "http://127.0.0.1:9", lifetime=3600)
    assert managed.inference_header() == "Bearer i-key"
    assert managed.stale()  # 60 s left of 3600: renew
    assert not ManagedKeys(path, "http://127.0.0.1:9", lifetime=60).stale()
    assert (path.stat().st_mode & 0o777) == 0o600
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not a TorchServe key file"):
        read_key_file(path)
