"""Step functions the isolation tests run in subprocesses (imported by module name there)."""

from __future__ import annotations

import os
import time
from typing import Any

from converters.errors import BadInput


def echo(value: int) -> dict[str, Any]:
    return {"doubled": value * 2, "pid": os.getpid()}


def refuse(field: str) -> dict[str, Any]:
    raise BadInput(f"{field}: not acceptable")


def explode() -> dict[str, Any]:
    raise ValueError("the converter blew up")


def crash() -> dict[str, Any]:
    print("about to die hard", flush=True)
    os._exit(7)


def hang(seconds: float) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)
    return {}
