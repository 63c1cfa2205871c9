"""Tracing for the gateway process: the no-op tracer, or OpenTelemetry when an endpoint is configured.

This module imports no OpenTelemetry: :mod:`gateway.tracing.otel` is imported only when
``otlp_endpoint`` is set, so a gateway without tracing never loads it.
"""

from __future__ import annotations

import re

from gateway.core.errors import ConfigError
from gateway.core.tracing import NO_TRACER, Tracer

_URL = re.compile(r"https?://[^\s/?#]+(/[^\s?#]*)?")


def check_otlp_endpoint(value: str | None) -> str | None:
    """The ``otlp_endpoint`` setting: unset, or an http(s) URL (a settings validator)."""
    if value is not None and value and not _URL.fullmatch(value):
        raise ValueError("must be an http:// or https:// URL such as http://otel-collector:4318")
    return value or None


def tracer_for(endpoint: str | None) -> Tracer:
    """Spans exported over OTLP/HTTP to ``endpoint``, or the no-op tracer when there is none."""
    if not endpoint:
        return NO_TRACER
    try:
        from opentelemetry.exporter.otlp.proto.http import trace_exporter  # noqa: F401
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        from gateway.tracing.otel import otel_tracer, otlp_exporter
    except ImportError:
        raise ConfigError(
            "otlp_endpoint is set but the tracing packages are not installed (pip install 'modelgate[tracing]')"
        ) from None

    return otel_tracer(BatchSpanProcessor(otlp_exporter(endpoint)))
