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
