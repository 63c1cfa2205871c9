"""No orphans: a child process tree that ends when the gateway ends, SIGKILL of the gateway included.

Two mechanisms, both Linux:

* :func:`die_with_parent` (``prctl(PR_SET_PDEATHSIG, SIGKILL)``) for a direct child that runs
  Python code we own, such as a TensorFlow worker: the kernel kills it when its parent dies.
  The signal is tied to the parent *thread* that forked the child, so it is only used where
  that thread lives as long as the process (the gateway's event-loop thread, or the
  single-threaded keeper below).
* The **keeper**, ``python -m gateway.backends.worker.keeper --lifeline FD -- command...``, for a
  program that has children of its own (TorchServe's Java frontend starts Python workers). The
  keeper starts the command in a new process group, with ``PR_SET_PDEATHSIG`` set, and watches:

  - the **lifeline**: the read end of a pipe whose only write end the gateway holds
    (:class:`Lifeline`). When the gateway dies, by any signal, the kernel closes that end, the
    keeper reads EOF and SIGKILLs the whole process group, then exits;
  - SIGTERM (the gateway's graceful stop): SIGTERM to the command, up to ``--stop-grace``
    seconds for it to exit, then SIGKILL to the group;
  - the command's own exit: the group is SIGKILLed (its leftover workers) and the keeper exits
    with the command's exit status.

  The keeper prints the command's PID (also its process group id) as its first stdout line.
  If the keeper itself is SIGKILLed, the command dies of its PDEATHSIG, and TorchServe's
  Python workers exit when their socket to the Java frontend closes.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

_PR_SET_PDEATHSIG = 1
#: Where the ``gateway`` package lives, so that ``python -m gateway...`` works from any cwd.
PACKAGE_ROOT = str(Path(__file__).resolve().parents[3])


def die_with_parent(parent_pid: int | None = None) -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (exit at once if it already has).

    ``parent_pid`` is the expected parent: if the parent died before the ``prctl`` call, the
    process was re-parented already and would never get the signal, so it exits instead.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The gateway's environment with the gateway package importable (for ``python -m gateway...``)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_ROOT, env.get("PYTHONPATH", "")) if p)
    env.update(extra or {})
    return env


class Lifeline:
    """A pipe whose write end only this process holds; the child watches the read end for EOF."""

    def __init__(self) -> None:
        self.read_fd, self._write_fd = os.pipe()  # both non-inheritable (PEP 446)

    def spawned(self) -> None:
        """Call once the child holds the read end (passed with ``pass_fds``): the gateway drops its copy."""
        with contextlib.suppress(OSError):
            os.close(self.read_fd)

    def cut(self) -> None:
        """Close the write end: the child sees EOF, as if the gateway had died."""
        with contextlib.suppress(OSError):
            os.close(self._write_fd)


def keeper_command(lifeline: Lifeline, log: Path, command: Sequence[str], stop_grace: float) -> list[str]:
    """The argv that runs ``command`` under a keeper."""
    return [
        sys.executable, "-m", "gateway.backends.worker.keeper",
        "--lifeline", str(lifeline.read_fd), "--log", str(log), "--stop-grace", f"{stop_grace:g}", "--", *command,
    ]  # fmt: skip


# -- the keeper process --------------------------------------------------------------------------


def _in_child(keeper_pid: int) -> Callable[[], None]:
    libc = ctypes.CDLL(None, use_errno=True)  # loaded before fork: no dlopen in the child

    def setup() -> None:
        os.umask(0o077)  # key file, logs and unpacked archives readable by this user only
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != keeper_pid:
            os._exit(1)

    return setup


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _readable(fds: list[int], timeout: float | None) -> list[int]:
    try:
        ready, _, _ = select.select(fds, [], [], timeout)
    except InterruptedError:  # pragma: no cover - PEP 475 retries select itself
        return []
    return ready


def _stop(child: subprocess.Popen[bytes], lifeline: int, grace: float) -> None:
    """SIGTERM the command, wait up to ``grace`` (or until the lifeline breaks), SIGKILL the group."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(child.pid, signal.SIGCONT)  # a stopped JVM cannot act on SIGTERM
        os.kill(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while child.poll() is None and time.monotonic() < deadline:
        if lifeline in _readable([lifeline], 0.1) and not os.read(lifeline, 1):
            break  # the gateway died meanwhile: no more patience
    _kill_group(child.pid)


def run(lifeline: int, log: Path, command: Sequence[str], stop_grace: float) -> int:
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGTERM, lambda *_: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the gateway, which stops us by SIGTERM
    with log.open("ab") as sink:  # preexec_fn is safe: the keeper is single-threaded
        child = subprocess.Popen(
            list(command), stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=_in_child(os.getpid()),
        )  # fmt: skip
    print(child.pid, flush=True)
    while True:
        ready = _readable([lifeline, wake_r], 1.0)
        if child.poll() is not None:
            _kill_group(child.pid)
            return child.returncode if child.returncode >= 0 else 128 - child.returncode
        if lifeline in ready and not os.read(lifeline, 1):
            _kill_group(child.pid)  # the gateway is gone
            child.wait()
            return 1
        if wake_r in ready and signal.SIGTERM in os.read(wake_r, 64):
            _stop(child, lifeline, stop_grace)
            child.wait()
            return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.backends.worker.keeper")
    parser.add_argument("--lifeline", type=int, required=True, help="read end of the gateway's lifeline pipe")
    parser.add_argument("--log", type=Path, required=True, help="file that receives the command's output")
    parser.add_argument("--stop-grace", type=float, default=30.0, help="seconds between SIGTERM and SIGKILL")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- program and arguments")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given after --")
    return run(args.lifeline, args.log, command, args.stop_grace)


if __name__ == "__main__":
    sys.exit(main())
