"""Request ids and the gateway's own words for unexpected failures, on REST and gRPC.

A handler that raises something unexpected (here a ValueError with a library-like message)
must answer a generic message carrying the request id, the same id must be in the log, and
the library's text must not reach the client. The gRPC side runs the interceptor
``modelgate serve`` installs on every unary call, over a real server on a free port.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.core.errors import ModelNotFound
from gateway.logs import request_id_from
from gateway.protocols.grpc_errors import INTERNAL_DETAILS
from gateway.protocols.grpc_server import RequestInterceptor
from gateway.protocols.http_app import HttpApp
from gateway.protos import open_inference_grpc_pb2 as pb
from gateway.protos import open_inference_grpc_pb2_grpc as pb_grpc

pytestmark = pytest.mark.anyio
LIBRARY_TEXT = "setting an array element with a sequence. The requested array has an inhomogeneous shape"


async def _explode(request: Request) -> Response:
    raise ValueError(LIBRARY_TEXT)


async def _missing(request: Request) -> Response:
    raise ModelNotFound("model 'x' is not in the repository")


@pytest.fixture
async def rest() -> AsyncIterator[httpx.AsyncClient]:
    app = HttpApp([Route("/explode", _explode), Route("/missing", _missing)])
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        yield client


@pytest.mark.parametrize("given", ["abc-123", "trace.id:7_x"])
def test_a_well_formed_client_id_is_kept(given: str) -> None:
    assert request_id_from(given) == given


@pytest.mark.parametrize("given", [None, "", "a b", "x" * 129, "id\nforged log line", "é"])
def test_anything_else_gets_a_new_id(given: str | None) -> None:
    assert re.fullmatch(r"[0-9a-f]{32}", request_id_from(given))


async def test_rest_returns_the_client_id(rest: httpx.AsyncClient) -> None:
    r = await rest.get("/missing", headers={"X-Request-Id": "abc-123"})
    assert r.status_code == 404 and r.headers["x-request-id"] == "abc-123"


async def test_rest_makes_an_id_when_none_is_given(rest: httpx.AsyncClient) -> None:
    r = await rest.get("/no-such-route")
    assert r.status_code == 404 and re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])


async def test_rest_unexpected_error_is_generic_with_the_id_also_logged(
    rest: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        r = await rest.get("/explode", headers={"X-Request-Id": "req-500"})
    assert r.status_code == 500
    assert r.json() == {"error": "internal error (see the gateway log, request id req-500)"}
    assert LIBRARY_TEXT not in r.text and "ValueError" not in r.text
    assert any("request id req-500" in record.getMessage() for record in caplog.records)


class _Exploding(pb_grpc.GRPCInferenceServiceServicer):
    async def ServerLive(self, request: pb.ServerLiveRequest, context: Any) -> pb.ServerLiveResponse:
        raise ValueError(LIBRARY_TEXT)

    async def ServerReady(self, request: pb.ServerReadyRequest, context: Any) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=True)

    async def ModelReady(self, request: pb.ModelReadyRequest, context: Any) -> pb.ModelReadyResponse:
        raise ModelNotFound("model 'x' is not in the repository")


@pytest.fixture
async def grpc_stub() -> AsyncIterator[pb_grpc.GRPCInferenceServiceStub]:
    server = grpc.aio.server(interceptors=[RequestInterceptor()])
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(_Exploding(), server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
    finally:
        await server.stop(grace=None)


def _trailing_id(metadata: Any) -> str | None:
    return next((value for key, value in metadata or () if key == "x-request-id"), None)


async def test_grpc_returns_the_client_id(grpc_stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    call = grpc_stub.ServerReady(pb.ServerReadyRequest(), metadata=(("x-request-id", "abc-123"),))
    assert (await call).ready
    assert _trailing_id(await call.trailing_metadata()) == "abc-123"


async def test_grpc_error_carries_the_id(grpc_stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await grpc_stub.ModelReady(pb.ModelReadyRequest(name="x"))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert re.fullmatch(r"[0-9a-f]{32}", _trailing_id(raised.value.trailing_metadata()) or "")


async def test_grpc_unexpected_error_is_generic_with_the_id_also_logged(
    grpc_stub: pb_grpc.GRPCInferenceServiceStub, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR), pytest.raises(grpc.aio.AioRpcError) as raised:
        await grpc_stub.ServerLive(pb.ServerLiveRequest(), metadata=(("x-request-id", "req-500"),))
    error = raised.value
    assert error.code() == grpc.StatusCode.INTERNAL
    assert error.details() == f"{INTERNAL_DETAILS} (request id req-500)"
    assert _trailing_id(error.trailing_metadata()) == "req-500"
    assert any("request id req-500" in record.getMessage() for record in caplog.records)
