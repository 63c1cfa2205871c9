"""Run directories of managed TorchServes: owned by one gateway process, cleaned when it is gone.

A run directory (``<tmp>/modelgate-torchserve-XXXX``, mode 0700) holds the key file, the
archives, the config and the logs of the gateway's TorchServes. Its ``owner`` file names the
gateway's PID and that process's start time (so a recycled PID does not count as the owner).
A gateway that starts calls :func:`clean_stale_run_dirs`: every such directory of this user
whose owner is no longer running is removed (its processes already died with their keeper).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

PREFIX = "modelgate-torchserve-"
OWNER_FILE = "owner"


def _start_time(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks), or None if the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 and fields[0] != "Z" else None


def make_run_dir(parent: Path | None = None, prefix: str = PREFIX) -> Path:
    """A fresh 0700 run directory owned by this process (stale ones of this user are cleaned first)."""
    clean_stale_run_dirs(parent, prefix)
    directory = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    claim(directory)
    return directory


def claim(directory: Path) -> None:
    """Write this process as the owner of ``directory``."""
    pid = os.getpid()
    (directory / OWNER_FILE).write_text(f"{pid} {_start_time(pid)}\n")


def owner_alive(directory: Path) -> bool:
    """Whether the process named in ``directory/owner`` still runs (an unreadable owner counts as gone)."""
    try:
        pid_text, start = (directory / OWNER_FILE).read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return False
    return _start_time(pid) == start


def clean_stale_run_dirs(parent: Path | None = None, prefix: str = PREFIX) -> list[Path]:
    """Remove this user's ``modelgate-torchserve-*`` (``prefix``) directories whose owning gateway is dead.

    Call it once when the gateway starts; returns what was removed. Directories of other
    users, and directories without an owner file younger than a minute (being created), stay.
    """
    base = parent or Path(tempfile.gettempdir())
    removed = []
    try:
        candidates = [p for p in base.iterdir() if p.name.startswith(prefix)]
    except OSError:
        return []
    for directory in candidates:
        try:
            info = directory.lstat()
        except OSError:
            continue
        if not directory.is_dir() or directory.is_symlink() or info.st_uid != os.getuid():
            continue
        if owner_alive(directory) or _being_created(directory):
            continue
        shutil.rmtree(directory, ignore_errors=True)
        removed.append(directory)
        log.info("removed the stale run directory %s (its gateway is gone)", directory)
    return removed


def _being_created(directory: Path) -> bool:
    try:
        return not (directory / OWNER_FILE).exists() and time.time() - directory.stat().st_mtime < 60
    except OSError:
        return False
