"""OpenTelemetry behind :class:`gateway.core.tracing.Tracer`: request spans exported over OTLP.

Only imported when an OTLP endpoint is configured (:func:`gateway.tracing.tracer_for`). The exporter is
OTLP over HTTP/protobuf (``opentelemetry-exporter-otlp-proto-http``), sent in batches from a
background thread, so a slow or absent collector never delays a request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from gateway import __version__
from gateway.core.errors import GatewayError
from gateway.core.tracing import Attributes, AttributeValue, Recorded

SERVICE_NAME = "modelgate"
#: The OTLP/HTTP path a collector receives traces on (appended to an endpoint given without a path).
TRACES_PATH = "/v1/traces"


class OtelSpan:
    """A :class:`gateway.core.tracing.Span` over an OpenTelemetry span."""

    __slots__ = ("_span",)

    def __init__(self, span: trace.Span) -> None:
        self._span = span

    def set(self, key: str, value: AttributeValue) -> None:
        self._span.set_attribute(key, value)

    def fail(self, message: str) -> None:
        self._span.set_status(Status(StatusCode.ERROR, message))


class OtelTracer:
    """A :class:`gateway.core.tracing.Tracer` writing to an OpenTelemetry tracer provider."""

    enabled = True

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self._tracer = provider.get_tracer("modelgate", __version__)
        #: Added to ``perf_counter`` nanoseconds for the wall-clock nanoseconds spans carry (fixed once, so
        #: one moment recorded for several requests has one timestamp).
        self._offset = time.time_ns() - time.perf_counter_ns()

    @contextmanager
    def span(
        self, name: str, attributes: Attributes | None = None, carrier: Mapping[str, str] | None = None
    ) -> Iterator[OtelSpan]:
        parent = propagate.extract(carrier) if carrier is not None else None
        kind = SpanKind.SERVER if carrier is not None else SpanKind.INTERNAL
        with self._tracer.start_as_current_span(
            name, parent, kind, attributes, record_exception=False, set_status_on_exception=False
        ) as span:
            try:
                yield OtelSpan(span)
            except BaseException as exc:
                span.set_status(Status(StatusCode.ERROR, _failure(exc)))
                raise

    def current(self) -> OtelSpan:
        return OtelSpan(trace.get_current_span())

    def record(self, span: Recorded) -> None:
        self._record(span, None, self._offset)

    def _record(self, recorded: Recorded, parent: trace.Span | None, offset: int) -> None:
        context = trace.set_span_in_context(parent) if parent is not None else None
        span = self._tracer.start_span(
            recorded.name, context, attributes=recorded.attributes, start_time=_ns(recorded.start, offset)
        )
        if recorded.error is not None:
            span.set_status(Status(StatusCode.ERROR, recorded.error))
        for child in recorded.children:
            self._record(child, span, offset)
        span.end(end_time=_ns(recorded.end, offset))

    def close(self) -> None:
        """Flush what is buffered and stop the exporter."""
        self.provider.shutdown()


def _ns(perf_seconds: float, offset: int) -> int:
    return int(perf_seconds * 1e9) + offset


def _failure(exc: BaseException) -> str:
    """What a failed span says: the gateway's own message (never a traceback or a library's text)."""
    if isinstance(exc, GatewayError):
        return f"{exc.kind.value}: {exc.message}"
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    return "internal error"


def otel_tracer(*processors: SpanProcessor) -> OtelTracer:
    """A tracer whose spans go to ``processors`` (the OTLP exporter, or a test's in-memory one)."""
    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE_NAME, "service.version": __version__}))
    for processor in processors:
        provider.add_span_processor(processor)
    return OtelTracer(provider)


def otlp_exporter(endpoint: str) -> SpanExporter:
    """OTLP/HTTP to ``endpoint`` (``http://collector:4318`` or the full ``.../v1/traces`` URL)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=traces_url(endpoint), timeout=10)


def traces_url(endpoint: str) -> str:
    """The collector's traces URL: ``endpoint`` as given when it has a path, else with ``/v1/traces``."""
    stripped = endpoint.rstrip("/")
    scheme_end = stripped.find("://") + 3
    return stripped if "/" in stripped[scheme_end:] else stripped + TRACES_PATH
