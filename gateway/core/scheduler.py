"""Per-model admission control and deadlines.

Every backend call goes through a :class:`ModelGate`: at most ``max_queue_size``
requests may be waiting or running for a model, the rest get an immediate
:class:`Overloaded` (429 / RESOURCE_EXHAUSTED) instead of queueing without bound; and
each call is cut at the model's deadline (504 / DEADLINE_EXCEEDED).

All calls of one gate share one timeout, so their deadlines fall in the order they started:
the gate keeps them in a queue with a single timer for the oldest (:class:`_Deadlines`),
instead of arming and cancelling a timer for every call as ``asyncio.timeout`` does (about
half of the gate's cost per request, see docs/performance.md).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TypeVar

from gateway.core.errors import DeadlineExceeded, Overloaded

T = TypeVar("T")


class ModelGate:
    """Bounded admission plus a deadline for one model."""

    def __init__(self, name: str, max_queue_size: int, timeout_seconds: float) -> None:
        self.name = name
        self.max_queue_size = max_queue_size
        self.timeout_seconds = timeout_seconds
        self.depth = 0
        self._deadlines = _Deadlines(timeout_seconds)

    async def run(self, call: Callable[[], Awaitable[T]]) -> T:
        """Admit the call or reject it at once; then bound it by the deadline."""
        if self.depth >= self.max_queue_size:
            raise Overloaded(
                f"model {self.name!r} has {self.depth} requests in flight (max_queue_size {self.max_queue_size})",
                retry_after=1.0,
            )
        self.depth += 1
        task = asyncio.current_task()
        assert task is not None, "ModelGate.run must be awaited in a task"
        entry = self._deadlines.start(task)
        try:
            return await call()
        except asyncio.CancelledError:
            if entry.expired and task.uncancel() <= entry.cancelling:  # our cancel, not the caller's
                raise DeadlineExceeded(
                    f"model {self.name!r} did not answer within {self.timeout_seconds:g} s (timeout_seconds)"
                ) from None
            raise
        finally:
            self._deadlines.finish(entry)
            self.depth -= 1


class _Deadline:
    __slots__ = ("at", "cancelling", "done", "expired", "task")

    def __init__(self, at: float, task: asyncio.Task[object]) -> None:
        self.at = at
        self.task = task
        self.cancelling = task.cancelling()  # cancel requests already pending when the call started
        self.done = False
        self.expired = False


class _Deadlines:
    """The running calls of one gate, oldest first, and one timer for the oldest deadline."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._queue: deque[_Deadline] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, task: asyncio.Task[object]) -> _Deadline:
        loop = task.get_loop()
        if loop is not self._loop:  # first call, or a new event loop (a closed one's timer never fires)
            self._queue.clear()
            self._timer, self._loop = None, loop
        entry = _Deadline(loop.time() + self.seconds, task)
        self._queue.append(entry)
        if self._timer is None:
            self._timer = loop.call_at(entry.at, self._expire, loop)
        return entry

    def finish(self, entry: _Deadline) -> None:
        entry.done = True
        queue = self._queue
        while queue and queue[0].done:  # calls mostly end in order: this keeps the queue short
            queue.popleft()
        if not queue and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        """Cancel every call past its deadline, then wait for the next oldest."""
        self._timer = None
        now = loop.time()
        queue = self._queue
        while queue and (queue[0].done or queue[0].at <= now):
            entry = queue.popleft()
            if not entry.done:
                entry.expired = True
                entry.task.cancel()
        if queue:
            self._timer = loop.call_at(queue[0].at, self._expire, loop)
