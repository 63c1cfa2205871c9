"""Retry policy and circuit breaker: generic, so tested without any backend."""

from __future__ import annotations

import asyncio
import random

import pytest

from gateway.backends.resilience import BreakerState, CircuitBreaker, Deadline, RetryPolicy, retry
from gateway.core.errors import BackendError, BackendUnavailable

pytestmark = pytest.mark.anyio


class ManualClock:
    """A clock the test advances by hand (injected, so no real waiting)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Flaky:
    """Fails with ``error`` for the first ``failures`` calls, then returns the call count."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0

    async def __call__(self) -> int:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return self.calls


def is_unavailable(exc: BaseException) -> bool:
    return isinstance(exc, BackendUnavailable)


def state(breaker: CircuitBreaker) -> BreakerState:
    """Read the state afresh (a helper, so type narrowing of one read does not leak into the next)."""
    return breaker.state


FAST = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.002)


async def test_retry_succeeds_after_retryable_failures() -> None:
    call = Flaky(2, BackendUnavailable("refused"))
    assert await retry(call, FAST, is_unavailable, Deadline.after(10.0)) == 3


async def test_retry_stops_at_max_attempts() -> None:
    call = Flaky(5, BackendUnavailable("refused"))
    with pytest.raises(BackendUnavailable):
        await retry(call, FAST, is_unavailable, Deadline.after(10.0))
    assert call.calls == 3


async def test_non_retryable_error_is_raised_at_once() -> None:
    call = Flaky(1, BackendError("handler failed"))
    with pytest.raises(BackendError):
        await retry(call, FAST, is_unavailable, Deadline.after(10.0))
    assert call.calls == 1


async def test_no_retry_when_backoff_would_pass_the_deadline() -> None:
    call = Flaky(1, BackendUnavailable("refused"))
    slow = RetryPolicy(max_attempts=5, base_delay=5.0, max_delay=5.0)

    class AlwaysLong(random.Random):
        def uniform(self, a: float, b: float) -> float:
            return b

    with pytest.raises(BackendUnavailable):
        await retry(call, slow, is_unavailable, Deadline.after(1.0), rng=AlwaysLong())
    assert call.calls == 1


def test_backoff_is_jittered_and_capped() -> None:
    policy = RetryPolicy(max_attempts=10, base_delay=0.1, max_delay=0.4)
    rng = random.Random(7)
    delays = [policy.backoff(attempt, rng) for attempt in range(1, 10) for _ in range(20)]
    assert all(0.0 <= d <= 0.4 for d in delays)
    assert len(set(delays)) > 100  # jittered, not a fixed schedule


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"max_attempts": 0}, "max_attempts"), ({"base_delay": 2.0, "max_delay": 1.0}, "base_delay")],
)
def test_policy_rejects_bad_settings(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


async def test_breaker_opens_after_threshold_and_fails_fast() -> None:
    clock = ManualClock()
    breaker = CircuitBreaker("http://ts", failure_threshold=3, cooldown=5.0, clock=clock)
    down = Flaky(100, BackendUnavailable("refused"))
    for _ in range(3):
        with pytest.raises(BackendUnavailable, match="refused"):
            await breaker.call(down, is_unavailable)
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(BackendUnavailable, match="circuit open") as info:
        await breaker.call(down, is_unavailable)
    assert down.calls == 3  # the open breaker did not call the endpoint
    assert info.value.retry_after == pytest.approx(5.0)


async def test_half_open_probe_success_closes_the_breaker() -> None:
    clock = ManualClock()
    breaker = CircuitBreaker("http://ts", failure_threshold=1, cooldown=2.0, clock=clock)
    with pytest.raises(BackendUnavailable):
        await breaker.call(Flaky(1, BackendUnavailable("refused")), is_unavailable)
    clock.now += 2.0
    assert state(breaker) is BreakerState.HALF_OPEN
    assert await breaker.call(Flaky(0, BackendUnavailable("x")), is_unavailable) == 1
    assert state(breaker) is BreakerState.CLOSED


async def test_half_open_allows_one_probe_and_failure_reopens() -> None:
    clock = ManualClock()
    breaker = CircuitBreaker("http://ts", failure_threshold=2, cooldown=2.0, clock=clock)
    for _ in range(2):
        with pytest.raises(BackendUnavailable):
            await breaker.call(Flaky(1, BackendUnavailable("refused")), is_unavailable)
    clock.now += 2.0
    breaker.before_call()  # the probe is out
    with pytest.raises(BackendUnavailable, match="circuit open"):
        breaker.before_call()  # a second caller during the probe fails fast
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN


async def test_errors_that_do_not_count_leave_the_breaker_closed() -> None:
    breaker = CircuitBreaker("http://ts", failure_threshold=1, cooldown=1.0)
    for _ in range(3):
        with pytest.raises(BackendError):
            await breaker.call(Flaky(1, BackendError("model failed")), is_unavailable)
    assert breaker.state is BreakerState.CLOSED


async def test_cancelled_probe_lets_another_probe_through() -> None:
    clock = ManualClock()
    breaker = CircuitBreaker("http://ts", failure_threshold=1, cooldown=1.0, clock=clock)
    with pytest.raises(BackendUnavailable):
        await breaker.call(Flaky(1, BackendUnavailable("refused")), is_unavailable)
    clock.now += 1.0
    never = asyncio.Event()

    async def hangs() -> None:
        await never.wait()

    probe = asyncio.create_task(breaker.call(hangs, is_unavailable))
    await asyncio.sleep(0)  # let the probe start (a yield, not a timed wait)
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    breaker.before_call()  # a new probe is allowed
    assert breaker.state is BreakerState.HALF_OPEN


def test_breaker_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="failure_threshold"):
        CircuitBreaker("x", failure_threshold=0)


async def test_on_retry_is_called_once_per_new_attempt() -> None:
    retries: list[int] = []
    call = Flaky(2, BackendUnavailable("refused"))
    await retry(call, FAST, is_unavailable, Deadline.after(10.0), on_retry=lambda: retries.append(call.calls))
    assert retries == [1, 2]


async def test_breaker_listeners_hear_open_and_close() -> None:
    clock = ManualClock()
    breaker = CircuitBreaker("http://ts", failure_threshold=2, cooldown=1.0, clock=clock)
    heard: list[bool] = []
    breaker.add_listener(heard.append)
    down = Flaky(2, BackendUnavailable("refused"))
    for _ in range(2):
        with pytest.raises(BackendUnavailable):
            await breaker.call(down, is_unavailable)
    clock.now += 1.0
    assert await breaker.call(down, is_unavailable) == 3
    assert heard == [True, False]
