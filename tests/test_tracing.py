"""The OTLP exporter for real: spans reach a collector endpoint as OTLP/HTTP protobuf.

A small HTTP server on 127.0.0.1 plays the collector and decodes what it receives with the
OTLP protobuf messages; closing the tracer flushes (no waiting on a batch timer).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from gateway.core import tracing
from gateway.core.tracing import NO_TRACER, Recorded
from gateway.tracing import tracer_for
from gateway.tracing.otel import traces_url


class Collector(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Receive)
        self.received: list[tuple[str, ExportTraceServiceRequest]] = []

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Receive(BaseHTTPRequestHandler):
    server: Collector

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((self.path, ExportTraceServiceRequest.FromString(body)))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def test_spans_are_exported_over_otlp_http(collector: Collector) -> None:
    tracer = tracer_for(collector.endpoint)
    assert tracer.enabled
    with tracer.span("rest infer", {tracing.MODEL: "digits"}, carrier={}) as span:
        span.set(tracing.STATUS, "200")
        tracer.record(Recorded("batch", 1.0, 1.5, {tracing.BATCH_ROWS: 4}, (Recorded("backend", 1.1, 1.4, {}),)))
    tracer.close()
    assert {path for path, _ in collector.received} == {"/v1/traces"}
    resources = [r for _, request in collector.received for r in request.resource_spans]
    for resource in resources:
        service = {a.key: a.value.string_value for a in resource.resource.attributes}
        assert service["service.name"] == "modelgate"
    spans = {s.name: s for resource in resources for scope in resource.scope_spans for s in scope.spans}
    assert set(spans) == {"rest infer", "batch", "backend"}
    assert spans["batch"].parent_span_id == spans["rest infer"].span_id
    assert spans["backend"].parent_span_id == spans["batch"].span_id
    assert spans["backend"].end_time_unix_nano - spans["backend"].start_time_unix_nano == pytest.approx(3e8, abs=1e3)
    attributes = {a.key: a.value for a in spans["rest infer"].attributes}
    assert attributes[tracing.STATUS].string_value == "200"


def test_no_endpoint_is_the_no_op_tracer() -> None:
    assert tracer_for(None) is NO_TRACER and tracer_for("") is NO_TRACER


@pytest.mark.parametrize(
    ("endpoint", "url"),
    [
        ("http://collector:4318", "http://collector:4318/v1/traces"),
        ("http://collector:4318/", "http://collector:4318/v1/traces"),
        ("https://otel.example/custom/path", "https://otel.example/custom/path"),
    ],
)
def test_an_endpoint_without_a_path_gets_the_otlp_traces_path(endpoint: str, url: str) -> None:
    assert traces_url(endpoint) == url


def test_serve_with_an_endpoint_but_without_the_packages_exits_2(tmp_path: Path) -> None:
    """As in the gateway image (no `tracing` extra): a clear one-line error, not a traceback."""
    script = (
        "import sys; sys.modules['opentelemetry'] = None  # as if the package were not installed\n"
        "from gateway.cli import main; sys.exit(main(['serve', '--model-repository', sys.argv[1]]))"
    )
    env = {**os.environ, "MODELGATE_OTLP_ENDPOINT": "http://127.0.0.1:9"}
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "modelgate: error: otlp_endpoint is set but the tracing packages are not installed "
        "(pip install 'modelgate[tracing]')"
    )
    assert "Traceback" not in done.stderr
