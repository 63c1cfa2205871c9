"""Where an in-process backend runs its blocking call: a thread pool (default) or the event loop (inline).

Handing a call to a thread and back costs about 180 µs on a small VM (a pool hand-off, a
wake-up of the event loop through its self-pipe and one more loop iteration), while a small
ONNX or TFLite model runs in 10-40 µs. ``inline`` skips the hop: the call runs on the event
loop itself. The trade-off: while it runs, the whole gateway (every model, every protocol,
health checks) waits for it, and nothing runs in parallel with it. Only for models whose
call takes microseconds, never for one that can take milliseconds. The model's ``timeout_seconds``
cannot cut an inline call short: nothing runs on the loop until it returns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TypeVar, TypeVarTuple, Unpack

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

INLINE_DESCRIPTION = (
    "Run the model on the event loop instead of a thread pool (saves the thread hop, ~0.2 ms per call); "
    "while it runs every other request waits, so only for models that answer in microseconds."
)


async def run_blocking(executor: Executor | None, fn: Callable[[Unpack[Ts]], T], *args: *Ts) -> T:
    """``fn(*args)`` on ``executor``, or right here on the event loop when ``executor`` is None (inline)."""
    if executor is None:
        return fn(*args)
    return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)
