"""What the core reports about each request's path: spans, through an interface (like :mod:`events`).

The core never imports a tracing library. Protocols open a request span and ``decode`` /
``encode`` children, the data plane a ``queue`` (admission) and ``backend`` child, and the
dynamic batcher, which runs one backend call for many requests, records for each request a
``queue`` (time in its queue), a ``batch`` and that batch's ``backend`` call as finished spans
(:class:`Recorded`) after the fact. :mod:`gateway.tracing` implements this with OpenTelemetry;
:data:`NO_TRACER` does nothing and is what runs when no OTLP endpoint is configured (hot paths
check :attr:`Tracer.enabled` before taking any timestamp).

Timestamps are ``time.perf_counter()`` seconds; the implementation converts them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

AttributeValue = str | int | float | bool
Attributes = Mapping[str, AttributeValue]

#: Attribute names shared by every span producer.
PROTOCOL = "modelgate.protocol"
MODEL = "modelgate.model"
VERSION = "modelgate.version"
REQUEST_ID = "modelgate.request_id"
STATUS = "modelgate.status"
BACKEND = "modelgate.backend"
QUEUE_DEPTH = "modelgate.queue.depth"
BATCH_ROWS = "modelgate.batch.rows"
BATCH_REQUESTS = "modelgate.batch.requests"


@dataclass(frozen=True, slots=True)
class Recorded:
    """A span that already happened (``start``/``end`` in ``perf_counter`` seconds), with its children."""

    name: str
    start: float
    end: float
    attributes: Attributes
    children: Sequence[Recorded] = ()
    error: str | None = None


class Span(Protocol):
    def set(self, key: str, value: AttributeValue) -> None:
        """Set an attribute."""

    def fail(self, message: str) -> None:
        """Mark the span as failed, with a message in our own words."""


class Tracer(Protocol):
    #: False: spans are not wanted; callers skip the work of preparing them.
    enabled: bool

    def span(
        self, name: str, attributes: Attributes | None = None, carrier: Mapping[str, str] | None = None
    ) -> AbstractContextManager[Span]:
        """A live span, child of the current one (or of the trace named in ``carrier``'s W3C headers)."""

    def current(self) -> Span:
        """The span active in this task (a no-op span outside any)."""

    def record(self, span: Recorded) -> None:
        """Add a finished span (and its children) under the current span."""

    def close(self) -> None:
        """Flush what is buffered and stop exporting (at shutdown)."""


class _NoSpan:
    def set(self, key: str, value: AttributeValue) -> None:
        return None

    def fail(self, message: str) -> None:
        return None

    def __enter__(self) -> _NoSpan:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


NO_SPAN = _NoSpan()


class _NoTracer:
    enabled = False

    def span(
        self, name: str, attributes: Attributes | None = None, carrier: Mapping[str, str] | None = None
    ) -> _NoSpan:
        return NO_SPAN

    def current(self) -> _NoSpan:
        return NO_SPAN

    def record(self, span: Recorded) -> None:
        return None

    def close(self) -> None:
        return None


NO_TRACER: Tracer = _NoTracer()
