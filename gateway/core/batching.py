"""Dynamic batching: concurrent requests for one model version share one backend call.

Requests queue up while the backend is busy; as soon as one of ``concurrency`` slots is
free, everything compatible that has queued (up to ``max_batch_size`` rows, or the largest
``preferred_batch_sizes`` entry that the queue can fill) is concatenated along the batch
dimension, run once, and split back. This amortises the hop off the event loop and lets
the runtime use its batch kernels.

The batch window (``max_delay_seconds``) is adaptive: when no batch is running the first
request goes at once (an idle model adds no delay), and while the backend is busy a free
slot waits at most the window for the batch to fill, ending the moment it is full. Every
dispatched batch is reported to an observer (rows, and how long each request queued).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from gateway.core import tracing
from gateway.core.tracing import NO_TRACER, Recorded, Tracer

log = logging.getLogger(__name__)

InferFn = Callable[[Mapping[str, np.ndarray], Sequence[str]], Awaitable[dict[str, np.ndarray]]]
#: Called for each dispatched batch with its rows and each request's seconds in the queue.
BatchObserver = Callable[[int, Sequence[float]], None]


@dataclass(slots=True)
class _Pending:
    inputs: Mapping[str, np.ndarray]
    outputs: tuple[str, ...]
    rows: int
    key: tuple[object, ...]
    future: asyncio.Future[dict[str, np.ndarray]]
    enqueued: float
    #: Only when tracing: this request's way through the batcher.
    timeline: _Timeline | None = None


@dataclass(slots=True)
class _Timeline:
    """``perf_counter`` times of one request in the batcher, and the batch it ran in."""

    enqueued: float
    dispatched: float = 0.0
    called: float = 0.0
    returned: float = 0.0
    rows: int = 0
    requests: int = 0
    error: str | None = None

    def batch_span(self, backend: str) -> Recorded:
        """The batch this request ran in, holding its ``backend`` call (``dispatched`` must be set)."""
        end = self.returned or time.perf_counter()
        call = Recorded("backend", self.called or self.dispatched, end, {tracing.BACKEND: backend}, error=self.error)
        batch_attributes = {tracing.BATCH_ROWS: self.rows, tracing.BATCH_REQUESTS: self.requests}
        return Recorded("batch", self.dispatched, end, batch_attributes, (call,), self.error)


class DynamicBatcher:
    """Coalesces requests to one backend; create it on the event loop that will use it."""

    def __init__(
        self,
        infer: InferFn,
        max_batch_size: int,
        concurrency: int,
        max_delay_seconds: float = 0.0,
        preferred_sizes: Sequence[int] = (),
        observer: BatchObserver | None = None,
        tracer: Tracer = NO_TRACER,
        backend: str = "",
    ) -> None:
        self._infer = infer
        self.max_batch_size = max_batch_size
        self.max_delay_seconds = max_delay_seconds
        self.preferred_sizes = sorted({s for s in preferred_sizes if 0 < s <= max_batch_size})
        #: Rows a batch aims for: the largest preferred size, else the max batch size.
        self.target_rows = self.preferred_sizes[-1] if self.preferred_sizes else max_batch_size
        self._observer = observer
        self._tracer = tracer
        self._backend = backend
        self._slots = asyncio.Semaphore(concurrency)
        self._queue: list[_Pending] = []
        self._filled = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self.batches = 0
        self.rows = 0

    async def infer(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str]) -> dict[str, np.ndarray]:
        """Same contract as :meth:`Backend.infer`; the first dimension of every input is the batch."""
        first = next(iter(inputs.values()))
        key = (tuple(outputs), tuple((n, a.dtype.str, a.shape[1:]) for n, a in sorted(inputs.items())))
        loop = asyncio.get_running_loop()
        pending = _Pending(inputs, tuple(outputs), first.shape[0], key, loop.create_future(), loop.time())
        if self._tracer.enabled:
            pending.timeline = _Timeline(time.perf_counter())
        self._queue.append(pending)
        if self.max_delay_seconds and self._queued_rows() >= self.target_rows:  # only a window waits for it
            self._filled.set()
        if self._dispatcher is None:
            self._dispatcher = asyncio.create_task(self._dispatch())
        if pending.timeline is None:
            return await pending.future
        try:
            return await pending.future
        finally:
            self._record(pending.timeline)

    def _record(self, timeline: _Timeline) -> None:
        """Report this request's queue wait, then its batch and backend call (in the request's own task)."""
        queued_until = timeline.dispatched or time.perf_counter()
        self._tracer.record(Recorded("queue", timeline.enqueued, queued_until, {}))
        if timeline.dispatched:
            self._tracer.record(timeline.batch_span(self._backend))

    async def _dispatch(self) -> None:
        try:
            while self._queue:
                await self._slots.acquire()
                if self.max_delay_seconds and self._running and self._queued_rows() < self.target_rows:
                    await self._wait_to_fill()
                batch = self._take()
                if batch:
                    self._observe(batch)
                    task = asyncio.create_task(self._run(batch))
                    self._running.add(task)  # the loop keeps only weak references to tasks
                    task.add_done_callback(self._running.discard)
                else:
                    self._slots.release()
        finally:
            self._dispatcher = None

    async def _wait_to_fill(self) -> None:
        """The batch window: until the queue holds a full batch, at most ``max_delay_seconds``."""
        self._filled.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._filled.wait(), self.max_delay_seconds)

    def _queued_rows(self) -> int:
        return sum(p.rows for p in self._queue if not p.future.done())

    def _take(self) -> list[_Pending]:
        """The oldest live request plus later compatible ones, up to the target rows."""
        self._queue = [p for p in self._queue if not p.future.done()]
        if not self._queue:
            return []
        head = self._queue[0]
        limit = max(self._batch_rows(head), head.rows)
        batch, rest, rows = [], [], 0
        for pending in self._queue:
            if pending.key == head.key and rows + pending.rows <= limit:
                batch.append(pending)
                rows += pending.rows
            else:
                rest.append(pending)
        self._queue = rest
        if self.max_delay_seconds and sum(p.rows for p in rest) < self.target_rows:
            self._filled.clear()
        return batch

    def _batch_rows(self, head: _Pending) -> int:
        """How many rows to take: the largest preferred size the compatible queue can fill, else the max."""
        if not self.preferred_sizes:
            return self.max_batch_size
        available = sum(p.rows for p in self._queue if p.key == head.key)
        fitting = [size for size in self.preferred_sizes if size <= available]
        return fitting[-1] if fitting else self.max_batch_size

    def _observe(self, batch: list[_Pending]) -> None:
        if self._tracer.enabled:
            _mark_dispatched(batch)
        if self._observer is None:
            return
        now = asyncio.get_running_loop().time()
        self._observer(sum(p.rows for p in batch), [now - p.enqueued for p in batch])

    async def _run(self, batch: list[_Pending]) -> None:
        try:
            if len(batch) == 1:
                merged = batch[0].inputs
            else:
                merged = {name: np.concatenate([p.inputs[name] for p in batch]) for name in batch[0].inputs}
            called = time.perf_counter() if self._tracer.enabled else 0.0
            try:
                results = await self._infer(merged, batch[0].outputs)
            except BaseException:
                if called:
                    _mark_called(batch, called, failed=True)
                raise
            if called:
                _mark_called(batch, called, failed=False)
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


def _mark_dispatched(batch: list[_Pending]) -> None:
    now = time.perf_counter()
    rows = sum(p.rows for p in batch)
    for pending in batch:
        if pending.timeline is not None:
            pending.timeline.dispatched, pending.timeline.rows, pending.timeline.requests = now, rows, len(batch)


def _mark_called(batch: list[_Pending], called: float, failed: bool) -> None:
    returned = time.perf_counter()
    for pending in batch:
        if pending.timeline is not None:
            pending.timeline.called, pending.timeline.returned = called, returned
            if failed:
                pending.timeline.error = "the backend call failed"


def _split(batch: list[_Pending], results: dict[str, np.ndarray]) -> None:
    start = 0
    for pending in batch:
        end = start + pending.rows
        if not pending.future.done():
            pending.future.set_result({name: value[start:end] for name, value in results.items()})
        start = end
