"""The readiness board: one file per worker slot, so that every worker answers readiness for all.

A worker writes ``<pid> ready`` to its slot once its models are loaded and ``<pid> draining``
when it begins to stop; the supervisor removes the slot of a worker that ended, before it
starts the replacement. The gateway is ready when every slot says ``ready`` for a process that
is still running (a worker killed a moment ago counts as not ready even before the supervisor
has noticed). The supervisor reads a dead worker's slot before clearing it: a worker that had
reached ready is replaced, one that died during the gateway's start-up stops the gateway.
"""

from __future__ import annotations

import os
from pathlib import Path

READY = "ready"
DRAINING = "draining"


def process_running(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie counts as ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat.rsplit(")", 1)[-1].split()
    return bool(fields) and fields[0] not in ("Z", "X")


class ReadinessBoard:
    def __init__(self, directory: Path, count: int) -> None:
        self.directory = directory
        self.count = count

    def _slot(self, index: int) -> Path:
        return self.directory / str(index)

    def publish(self, index: int, state: str) -> None:
        """Record this process's state in slot ``index`` (atomic replace)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.directory / f".{index}.{os.getpid()}.tmp"
        tmp.write_text(f"{os.getpid()} {state}\n")
        os.replace(tmp, self._slot(index))

    def clear(self, index: int) -> None:
        self._slot(index).unlink(missing_ok=True)

    def _read(self, index: int) -> tuple[int, str] | None:
        try:
            pid_text, state = self._slot(index).read_text().split()
            return int(pid_text), state
        except (OSError, ValueError):
            return None

    def slot_ready(self, index: int) -> bool:
        entry = self._read(index)
        return entry is not None and entry[1] == READY and process_running(entry[0])

    def was_ready(self, index: int, pid: int) -> bool:
        """Whether process ``pid`` reached ready in slot ``index`` (it may have died or begun draining since)."""
        entry = self._read(index)
        return entry is not None and entry[0] == pid and entry[1] in (READY, DRAINING)

    def all_ready(self) -> bool:
        return all(self.slot_ready(index) for index in range(self.count))
