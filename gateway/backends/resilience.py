"""Retries and circuit breaking for calls from the gateway to a remote serving backend.

Generic on purpose (TorchServe and TF Serving backends share it): a backend says which of
its failures are safe to retry, and these helpers decide whether and when. Two rules hold
for every remote call:

* a retry never outlives the request's deadline: if the next backoff would end after it,
  the last error is raised now (the data plane's gate then answers 503, not a late 504);
* while an endpoint keeps failing, its breaker is open and calls fail fast with
  :class:`BackendUnavailable` instead of piling up on a dead server; after a cooldown one
  probe call is let through (half-open) and its outcome closes or re-opens the breaker.
"""

from __future__ import annotations

import asyncio
import enum
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from gateway.core.errors import BackendUnavailable

T = TypeVar("T")

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Deadline:
    """An absolute point on the monotonic clock by which the caller wants an answer."""

    at: float
    clock: Clock = time.monotonic

    @classmethod
    def after(cls, seconds: float, clock: Clock = time.monotonic) -> Deadline:
        return cls(clock() + seconds, clock)

    def remaining(self) -> float:
        return self.at - self.clock()


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded attempts with full-jitter exponential backoff."""

    max_attempts: int = 3
    base_delay: float = 0.05
    max_delay: float = 1.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.base_delay < 0 or self.max_delay < self.base_delay:
            raise ValueError(f"need 0 <= base_delay <= max_delay, got {self.base_delay}, {self.max_delay}")

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Delay before attempt ``attempt + 1`` (attempt counts from 1): uniform in [0, cap]."""
        cap = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return rng.uniform(0.0, cap)


async def retry(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    retryable: Callable[[BaseException], bool],
    deadline: Deadline,
    rng: random.Random | None = None,
    on_retry: Callable[[], None] | None = None,
) -> T:
    """Run ``call``; on a retryable error, back off and try again while attempts and time remain.

    ``on_retry`` is called once before each new attempt (the gateway counts retries with it).
    """
    rng = rng or random.Random()
    attempt = 1
    while True:
        try:
            return await call()
        except Exception as exc:
            if not retryable(exc) or attempt >= policy.max_attempts:
                raise
            delay = policy.backoff(attempt, rng)
            if delay >= deadline.remaining():
                raise
        if on_retry is not None:
            on_retry()
        await asyncio.sleep(delay)
        attempt += 1


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Per-endpoint breaker: opens after ``failure_threshold`` consecutive failures.

    Only failures that say the endpoint is unhealthy should be recorded (connection refused,
    "no worker"): a model error or a client's bad input says nothing about the endpoint.
    """

    def __init__(
        self, endpoint: str, failure_threshold: int = 5, cooldown: float = 1.0, clock: Clock = time.monotonic
    ) -> None:
        if failure_threshold < 1 or cooldown <= 0:
            raise ValueError("failure_threshold must be >= 1 and cooldown > 0")
        self.endpoint = endpoint
        self.failure_threshold = failure_threshold
        self.cooldown = cooldown
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False
        self._listeners: list[Callable[[bool], None]] = []

    def add_listener(self, listener: Callable[[bool], None]) -> None:
        """Call ``listener(True)`` when the breaker opens and ``listener(False)`` when it closes."""
        self._listeners.append(listener)

    def _notify(self, is_open: bool) -> None:
        for listener in self._listeners:
            listener(is_open)

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - self._opened_at >= self.cooldown:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def before_call(self) -> None:
        """Raise :class:`BackendUnavailable` unless a call may go out now."""
        state = self.state
        if state is BreakerState.CLOSED:
            return
        if state is BreakerState.HALF_OPEN and not self._probing:
            self._probing = True
            return
        wait = max(0.0, self.cooldown - (self._clock() - (self._opened_at or 0.0)))
        raise BackendUnavailable(
            f"backend {self.endpoint} is failing; circuit open after {self._failures} consecutive failures",
            retry_after=max(wait, 0.1),
        )

    def record_success(self) -> None:
        was_open = self._opened_at is not None
        self._failures = 0
        self._opened_at = None
        self._probing = False
        if was_open:
            self._notify(False)

    def record_failure(self) -> None:
        self._failures += 1
        was_open = self._opened_at is not None
        if self._probing or self._failures >= self.failure_threshold:
            self._opened_at = self._clock()
        self._probing = False
        if self._opened_at is not None and not was_open:
            self._notify(True)

    def release_probe(self) -> None:
        """The probe ended with no verdict on the endpoint (cancelled): let another probe go."""
        self._probing = False

    async def call(self, fn: Callable[[], Awaitable[T]], counts: Callable[[BaseException], bool]) -> T:
        """Run ``fn`` through the breaker; errors for which ``counts`` is true count as endpoint failures."""
        self.before_call()
        try:
            result = await fn()
        except Exception as exc:
            if counts(exc):
                self.record_failure()
            else:  # the endpoint answered (a model or input error): it is up
                self.record_success()
            raise
        except BaseException:  # cancelled (e.g. the deadline): no verdict on the endpoint
            self.release_probe()
            raise
        self.record_success()
        return result
