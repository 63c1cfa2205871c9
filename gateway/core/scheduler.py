"""Per-model admission control and deadlines.

Every backend call goes through a :class:`ModelGate`: at most ``max_queue_size``
requests may be waiting or running for a model, the rest get an immediate
:class:`Overloaded` (429 / RESOURCE_EXHAUSTED) instead of queueing without bound; and
each call is cut at the model's deadline (504 / DEADLINE_EXCEEDED).
"""

from __future__ import annotations

import asyncio
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

    async def run(self, call: Callable[[], Awaitable[T]]) -> T:
        """Admit the call or reject it at once; then bound it by the deadline."""
        if self.depth >= self.max_queue_size:
            raise Overloaded(
                f"model {self.name!r} has {self.depth} requests in flight (max_queue_size {self.max_queue_size})",
                retry_after=1.0,
            )
        self.depth += 1
        try:
            async with asyncio.timeout(self.timeout_seconds):
                return await call()
        except TimeoutError:
            raise DeadlineExceeded(
                f"model {self.name!r} did not answer within {self.timeout_seconds:g} s (timeout_seconds)"
            ) from None
        finally:
            self.depth -= 1
