"""The parts of ``--workers`` that need no server: the workers setting, the shared ports, the
readiness board and the data plane's readiness across workers (real sockets and processes)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.core.dataplane import DataPlane
from gateway.core.errors import ConfigError
from gateway.multiprocess import ports
from gateway.multiprocess.readiness import DRAINING, READY, ReadinessBoard
from gateway.settings import load_settings
from tests.harness import Served

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("given", "stored"), [(None, 1), ("1", 1), ("3", 3), (4, 4), ("auto", "auto"), ("AUTO", "auto")]
)
def test_workers_setting(given: object, stored: object) -> None:
    assert load_settings(workers=given).workers == stored


def test_auto_means_one_worker_per_usable_core() -> None:
    assert load_settings(workers="auto").worker_count() == len(os.sched_getaffinity(0))
    assert load_settings(workers="3").worker_count() == 3


@pytest.mark.parametrize("bad", ["0", "-1", "1.5", "two", ""])
def test_a_bad_workers_value_names_the_field_and_the_rule(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"workers: .*must be a whole number >= 1 or 'auto'"):
        load_settings(workers=bad)


def test_a_reserved_port_is_refused_to_anyone_else_and_shared_by_workers() -> None:
    reserved = ports.reserve("127.0.0.1", 0)
    port = reserved.getsockname()[1]
    try:
        workers = [ports.bind("127.0.0.1", port, reuse_port=True) for _ in range(2)]
        for sock in workers:
            sock.listen(64)
            sock.settimeout(0)
        with pytest.raises(OSError, match=f"cannot bind 127.0.0.1:{port}"):
            ports.bind("127.0.0.1", port).close()  # not sharing: refused
        with pytest.raises(OSError, match=f"cannot bind 127.0.0.1:{port}"):
            ports.reserve("127.0.0.1", port).close()  # a second gateway: refused
        clients = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(40)]
        accepted = 0
        for sock in workers:  # every connection reached a listening worker, none the reserving socket
            while True:
                try:
                    conn, _ = sock.accept()
                except BlockingIOError:
                    break
                conn.close()
                accepted += 1
        assert accepted == len(clients)
        for client in clients:
            client.close()
        for sock in workers:
            sock.close()
    finally:
        reserved.close()


def test_a_port_in_use_cannot_be_reserved() -> None:
    taken = ports.bind("127.0.0.1", 0)
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        with pytest.raises(OSError, match=f"cannot bind 127.0.0.1:{port}"):
            ports.reserve("127.0.0.1", port)
    finally:
        taken.close()


def _ended_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_the_board_is_ready_only_when_every_slot_is_ready(tmp_path: Path) -> None:
    board = ReadinessBoard(tmp_path / "ready", 2)
    assert not board.all_ready()  # nobody has reported
    board.publish(0, READY)
    assert board.slot_ready(0) and not board.all_ready()
    board.publish(1, READY)
    assert board.all_ready()
    board.publish(1, DRAINING)
    assert not board.all_ready()
    board.publish(1, READY)
    board.clear(0)  # the supervisor saw worker 0 end
    assert not board.all_ready()


def test_a_slot_of_a_process_that_ended_is_not_ready(tmp_path: Path) -> None:
    board = ReadinessBoard(tmp_path, 1)
    dead = _ended_pid()
    (tmp_path / "0").write_text(f"{dead} {READY}\n")  # a worker killed before anyone noticed
    assert not board.all_ready()
    assert board.was_ready(0, dead)  # the supervisor still sees that it had been ready: replace, not stop
    assert not board.was_ready(0, os.getpid())
    board.publish(0, READY)
    assert board.all_ready()


async def test_the_data_plane_is_ready_only_when_the_other_workers_are(served: Served, tmp_path: Path) -> None:
    board = ReadinessBoard(tmp_path, 2)
    dataplane = DataPlane(served.manager, served.metrics, peers_ready=board.all_ready)
    board.publish(0, READY)
    assert not dataplane.ready()
    board.publish(1, READY)
    assert dataplane.ready()
    dataplane.draining = True
    assert not dataplane.ready()
