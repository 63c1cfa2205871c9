"""A one-paragraph description of the machine and the load on it, for the dated table."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path


def _first(path: str, key: str) -> str:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def _tool_version(args: list[str]) -> str:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (done.stdout + done.stderr).strip().splitlines()
    return text[0].split(" Copyright")[0] if text else "unknown"


def describe() -> str:
    mem_kib = _first("/proc/meminfo", "MemTotal").split()[0]
    mem = f"{int(mem_kib) / 2**20:.0f} GiB" if mem_kib.isdigit() else "unknown memory"
    return (f"{os.cpu_count()} cores ({_first('/proc/cpuinfo', 'model name')}), {mem}, "
            f"{platform.system()} {platform.release()}, Python {platform.python_version()}; "
            f"{_tool_version(['wrk', '-v'])}; {_tool_version(['h2load', '--version'])}")  # fmt: skip


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"
