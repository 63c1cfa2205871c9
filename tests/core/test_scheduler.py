import asyncio

import pytest

from gateway.core.errors import DeadlineExceeded, Overloaded
from gateway.core.scheduler import ModelGate


@pytest.mark.anyio
async def test_overflow_is_rejected_at_once_with_retry_after() -> None:
    gate = ModelGate("m", max_queue_size=2, timeout_seconds=5)
    release = asyncio.Event()

    async def held() -> str:
        await release.wait()
        return "done"

    first = asyncio.create_task(gate.run(held))
    second = asyncio.create_task(gate.run(held))
    while gate.depth < 2:
        await asyncio.sleep(0)
    with pytest.raises(Overloaded) as info:
        await gate.run(held)
    assert info.value.retry_after is not None and "max_queue_size 2" in info.value.message
    release.set()
    assert await asyncio.gather(first, second) == ["done", "done"]
    assert gate.depth == 0


@pytest.mark.anyio
async def test_deadline_cuts_a_hung_call() -> None:
    gate = ModelGate("m", max_queue_size=4, timeout_seconds=0.05)
    never = asyncio.Event()

    async def hung() -> None:
        await never.wait()

    with pytest.raises(DeadlineExceeded, match=r"0\.05 s"):
        await gate.run(hung)
    assert gate.depth == 0
