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


@pytest.mark.anyio
async def test_the_deadline_cuts_only_the_call_that_passed_it() -> None:
    gate = ModelGate("m", max_queue_size=8, timeout_seconds=0.05)
    never = asyncio.Event()

    async def hung() -> str:
        await never.wait()
        return "never"

    async def quick() -> str:
        return "quick"

    cut = asyncio.create_task(gate.run(hung))
    answers = [await gate.run(quick) for _ in range(3)]  # started after the hung call, answered at once
    with pytest.raises(DeadlineExceeded):
        await cut
    assert answers == ["quick"] * 3
    assert await gate.run(quick) == "quick"  # the gate keeps working after a deadline
    assert gate.depth == 0


@pytest.mark.anyio
async def test_hung_calls_each_get_their_deadline() -> None:
    gate = ModelGate("m", max_queue_size=8, timeout_seconds=0.05)
    never = asyncio.Event()
    calls = [asyncio.create_task(gate.run(never.wait)) for _ in range(3)]
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(r, DeadlineExceeded) for r in results)
    assert gate.depth == 0


@pytest.mark.anyio
async def test_a_caller_that_cancels_sees_a_cancellation_not_a_deadline() -> None:
    gate = ModelGate("m", max_queue_size=8, timeout_seconds=3600)
    started, never = asyncio.Event(), asyncio.Event()

    async def hung() -> None:
        started.set()
        await never.wait()

    call = asyncio.create_task(gate.run(hung))
    await started.wait()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert gate.depth == 0


def test_a_gate_cuts_hung_calls_on_one_event_loop_after_another() -> None:
    gate = ModelGate("m", max_queue_size=8, timeout_seconds=0.05)

    async def cut_once() -> None:
        with pytest.raises(DeadlineExceeded):
            await gate.run(asyncio.Event().wait)

    asyncio.run(cut_once())
    asyncio.run(cut_once())
