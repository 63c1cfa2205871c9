"""Dynamic batching: coalescing, splitting, errors and cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

import numpy as np
import pytest

from gateway.core.batching import DynamicBatcher

pytestmark = pytest.mark.anyio


class Recorder:
    """A backend call that doubles its input and records each batch; ``gate`` holds calls open."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.gate = asyncio.Event()
        self.fail: Exception | None = None

    async def __call__(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str]) -> dict[str, np.ndarray]:
        self.batches.append(len(inputs["x"]))
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return {name: inputs["x"] * 2 for name in outputs}


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def rows(*values: float) -> dict[str, np.ndarray]:
    return {"x": np.array([[v] for v in values], np.float32)}


async def test_queued_requests_share_one_call_and_get_their_own_rows() -> None:
    backend = Recorder()
    batcher = DynamicBatcher(backend, max_batch_size=16, concurrency=1)
    first = asyncio.create_task(batcher.infer(rows(1), ["y"]))
    await settle()
    rest = [asyncio.create_task(batcher.infer(rows(float(i), float(i) + 0.5), ["y"])) for i in range(2, 6)]
    await settle()
    backend.gate.set()
    assert (await first)["y"].tolist() == [[2.0]]
    for i, task in zip(range(2, 6), rest, strict=True):
        assert (await task)["y"].tolist() == [[2.0 * i], [2.0 * i + 1.0]]
    assert backend.batches == [1, 8]
    assert (batcher.batches, batcher.rows) == (2, 9)


async def test_max_batch_size_and_incompatible_shapes_split_batches() -> None:
    backend = Recorder()
    batcher = DynamicBatcher(backend, max_batch_size=3, concurrency=1)
    blocker = asyncio.create_task(batcher.infer(rows(0), ["y"]))
    await settle()
    tasks = [asyncio.create_task(batcher.infer(rows(1, 2), ["y"])) for _ in range(2)]
    wide = asyncio.create_task(batcher.infer({"x": np.zeros((1, 2), np.float32)}, ["y"]))
    await settle()
    backend.gate.set()
    await asyncio.gather(blocker, wide, *tasks)
    assert backend.batches == [1, 2, 2, 1]
    assert (await wide)["y"].shape == (1, 2)


async def test_backend_error_reaches_every_waiter() -> None:
    backend = Recorder()
    backend.fail = RuntimeError("boom")
    batcher = DynamicBatcher(backend, max_batch_size=8, concurrency=1)
    tasks = [asyncio.create_task(batcher.infer(rows(i), ["y"])) for i in range(3)]
    await settle()
    backend.gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)


async def test_cancelled_waiter_is_skipped() -> None:
    backend = Recorder()
    batcher = DynamicBatcher(backend, max_batch_size=8, concurrency=1)
    blocker = asyncio.create_task(batcher.infer(rows(0), ["y"]))
    await settle()
    gone = asyncio.create_task(batcher.infer(rows(1), ["y"]))
    kept = asyncio.create_task(batcher.infer(rows(2), ["y"]))
    await settle()
    gone.cancel()
    backend.gate.set()
    assert (await kept)["y"].tolist() == [[4.0]]
    await blocker
    assert backend.batches == [1, 1]


async def test_an_idle_model_never_waits_for_the_window() -> None:
    backend = Recorder()
    batcher = DynamicBatcher(backend, max_batch_size=8, concurrency=2, max_delay_seconds=3600)
    alone = asyncio.create_task(batcher.infer(rows(1), ["y"]))
    await settle()
    assert backend.batches == [1]  # dispatched at once although the window is an hour long
    backend.gate.set()
    assert (await alone)["y"].tolist() == [[2.0]]


async def test_the_window_ends_as_soon_as_the_batch_is_full() -> None:
    backend = Recorder()
    waits: list[tuple[int, int]] = []
    batcher = DynamicBatcher(
        backend, 4, concurrency=2, max_delay_seconds=3600, observer=lambda n, q: waits.append((n, len(q)))
    )
    busy = asyncio.create_task(batcher.infer(rows(0), ["y"]))
    await settle()
    first = [asyncio.create_task(batcher.infer(rows(float(i)), ["y"])) for i in range(1, 3)]
    await settle()
    assert backend.batches == [1]  # busy backend, half-full batch: the free slot waits in the window
    more = [asyncio.create_task(batcher.infer(rows(float(i)), ["y"])) for i in range(3, 5)]
    await settle()
    assert backend.batches == [1, 4]  # full: dispatched without waiting out the hour
    backend.gate.set()
    for i, task in enumerate([busy, *first, *more]):
        assert (await task)["y"].tolist() == [[2.0 * i]]
    assert waits == [(1, 1), (4, 4)]


async def test_preferred_sizes_shape_the_batches() -> None:
    backend = Recorder()
    batcher = DynamicBatcher(backend, 16, concurrency=1, preferred_sizes=[2, 4])
    blocker = asyncio.create_task(batcher.infer(rows(0), ["y"]))
    await settle()
    queued = [asyncio.create_task(batcher.infer(rows(float(i)), ["y"])) for i in range(1, 8)]
    await settle()
    backend.gate.set()
    results = await asyncio.gather(blocker, *queued)
    assert [r["y"].tolist() for r in results] == [[[2.0 * i]] for i in range(8)]
    assert backend.batches == [1, 4, 2, 1]  # 7 queued: the largest preferred size each time, then the rest


async def test_a_mixed_burst_gets_exactly_the_unbatched_answers() -> None:
    backend = Recorder()
    backend.gate.set()
    batcher = DynamicBatcher(backend, 8, concurrency=1, max_delay_seconds=0.001, preferred_sizes=[4])
    shapes = [(1 + i % 3, 1 + (i % 2)) for i in range(24)]  # several batch sizes, two row widths
    inputs = [{"x": np.arange(n * w, dtype=np.float32).reshape(n, w) + i} for i, (n, w) in enumerate(shapes)]
    tasks = [asyncio.create_task(batcher.infer(x, ["y"])) for x in inputs]
    for x, task in zip(inputs, tasks, strict=True):
        assert (await task)["y"].tolist() == (x["x"] * 2).tolist()
    assert all(size <= 8 for size in backend.batches) and len(backend.batches) < len(inputs)
