"""The benchmark's servers: each in its own process group; they and whatever they started die on exit.

The runner becomes a child subreaper, so a process a peer starts and orphans (Ray's raylet,
TorchServe's workers, BentoML's workers) is re-parented to the runner instead of init and is still
found, by PID, when :meth:`Processes.close` runs: SIGTERM to every group, a grace period, then
SIGKILL to every group and to every remaining descendant. ``close`` runs on normal exit, on an
exception, on Ctrl-C and on SIGTERM (``signals_unwind``).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from pathlib import Path
from types import FrameType

import psutil

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> None:
    """Orphans of our descendants are re-parented to this process (Linux; a no-op elsewhere)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def signals_unwind() -> None:
    """SIGINT and SIGTERM raise KeyboardInterrupt, so ``finally`` blocks stop the servers.

    SIGINT is set explicitly: a shell starts background jobs with SIGINT ignored, and Python keeps that.
    """

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


class Processes:
    """Started server processes; use as a context manager."""

    def __init__(self, grace: float = 15.0) -> None:
        self.grace = grace
        self._started: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Processes:
        become_subreaper()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, args: list[str], log: Path, env: dict[str, str] | None = None,
              cwd: Path | None = None) -> subprocess.Popen[bytes]:  # fmt: skip
        """Start ``args`` in a new session (its own process group), output to ``log``."""
        with log.open("ab") as out:
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                                    cwd=cwd, start_new_session=True)  # fmt: skip
        self._started.append(proc)
        return proc

    def close(self) -> None:
        """SIGTERM every group, wait up to the grace period, then SIGKILL groups and all descendants."""
        started, self._started = self._started, []
        for proc in started:
            _signal_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        for proc in started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.1, deadline - time.monotonic()))
        for proc in started:
            _signal_group(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        _kill_descendants()


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _kill_descendants() -> None:
    """SIGKILL and reap whatever is still below this process (orphans re-parented to the subreaper)."""
    for _ in range(3):
        children = psutil.Process().children(recursive=True)
        if not children:
            return
        for child in children:
            with contextlib.suppress(psutil.Error):
                child.kill()
        psutil.wait_procs(children, timeout=5)
