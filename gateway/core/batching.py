"""Dynamic batching: concurrent requests for one model version share one backend call.

Requests queue up while the backend is busy; as soon as one of ``concurrency`` slots is
free, everything compatible that has queued (up to ``max_batch_size`` rows) is
concatenated along the batch dimension, run once, and split back. With
``max_delay_seconds`` at 0 nothing waits on a timer: under light load a request runs
alone at once, under heavy load batches form by themselves. This amortises the hop off
the event loop and lets the runtime use its batch kernels.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

InferFn = Callable[[Mapping[str, np.ndarray], Sequence[str]], Awaitable[dict[str, np.ndarray]]]


@dataclass(slots=True)
class _Pending:
    inputs: Mapping[str, np.ndarray]
    outputs: tuple[str, ...]
    rows: int
    key: tuple[object, ...]
    future: asyncio.Future[dict[str, np.ndarray]]


class DynamicBatcher:
    """Coalesces requests to one backend; create it on the event loop that will use it."""

    def __init__(self, infer: InferFn, max_batch_size: int, concurrency: int, max_delay_seconds: float = 0.0) -> None:
        self._infer = infer
        self.max_batch_size = max_batch_size
        self.max_delay_seconds = max_delay_seconds
        self._slots = asyncio.Semaphore(concurrency)
        self._queue: list[_Pending] = []
        self._dispatcher: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self.batches = 0
        self.rows = 0

    async def infer(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str]) -> dict[str, np.ndarray]:
        """Same contract as :meth:`Backend.infer`; the first dimension of every input is the batch."""
        first = next(iter(inputs.values()))
        key = (tuple(outputs), tuple((n, a.dtype.str, a.shape[1:]) for n, a in sorted(inputs.items())))
        pending = _Pending(inputs, tuple(outputs), first.shape[0], key, asyncio.get_running_loop().create_future())
        self._queue.append(pending)
        if self._dispatcher is None:
            self._dispatcher = asyncio.create_task(self._dispatch())
        return await pending.future

    async def _dispatch(self) -> None:
        try:
            while self._queue:
                await self._slots.acquire()
                if self.max_delay_seconds and self._queued_rows() < self.max_batch_size:
                    await asyncio.sleep(self.max_delay_seconds)
                batch = self._take()
                if batch:
                    task = asyncio.create_task(self._run(batch))
                    self._running.add(task)  # the loop keeps only weak references to tasks
                    task.add_done_callback(self._running.discard)
                else:
                    self._slots.release()
        finally:
            self._dispatcher = None

    def _queued_rows(self) -> int:
        return sum(p.rows for p in self._queue)

    def _take(self) -> list[_Pending]:
        """The oldest live request plus every later compatible one that fits."""
        self._queue = [p for p in self._queue if not p.future.done()]
        if not self._queue:
            return []
        head = self._queue[0]
        batch, rest, rows = [], [], 0
        for pending in self._queue:
            if pending.key == head.key and rows + pending.rows <= max(self.max_batch_size, head.rows):
                batch.append(pending)
                rows += pending.rows
            else:
                rest.append(pending)
        self._queue = rest
        return batch

    async def _run(self, batch: list[_Pending]) -> None:
        try:
            if len(batch) == 1:
                merged = batch[0].inputs
            else:
                merged = {name: np.concatenate([p.inputs[name] for p in batch]) for name in batch[0].inputs}
            results = await self._infer(merged, batch[0].outputs)
        except BaseException as exc:  # every waiter gets the backend's error; nothing is lost silently
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        finally:
            self._slots.release()
        self.batches += 1
        self.rows += sum(p.rows for p in batch)
        _split(batch, results)


def _split(batch: list[_Pending], results: dict[str, np.ndarray]) -> None:
    start = 0
    for pending in batch:
        end = start + pending.rows
        if not pending.future.done():
            pending.future.set_result({name: value[start:end] for name, value in results.items()})
        start = end
