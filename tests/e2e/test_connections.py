"""Bounded connections on a real ``modelgate serve`` over real sockets: slow clients are cut off
by their deadlines while normal requests succeed, oversized headers and bodies are refused,
connections past the limit are refused at once, and gRPC connections age out and enforce
keepalive policy.

Deadlines are set small through settings so each test is quick; every wait is a bounded poll
or a blocking read with a generous hang guard, never a sleep used as synchronisation.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import grpc
import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.protos import open_inference_grpc_pb2 as pb
from gateway.protos import open_inference_grpc_pb2_grpc as pb_grpc
from tests.e2e.server_process import ServerProcess
from tests.onnx_models import write_slow_model
from tests.sockets import reset_within

pytestmark = pytest.mark.e2e

#: How long a test waits for something the server must do within its (short) deadline: a hang guard only.
HANG_GUARD = 60.0
LIMITED_CONNECTIONS = 3


def _config(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


#: The REST port's two servers (``http_server``): every REST bound is checked on both.
HTTP_SERVERS = ["modelgate", "uvicorn"]


@pytest.fixture(scope="module", params=HTTP_SERVERS)
def server(
    demo_repo: Path, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[ServerProcess]:
    """Short deadlines (1 s headers, 1 s body, 1 s idle keep-alive, 1 s writes to a client that reads nothing),
    4 KiB of headers, 1 MiB bodies."""
    config = _config(
        tmp_path_factory.mktemp("conn"),
        "gateway.yaml",
        f"http_server: {request.param}\n"
        "http_header_timeout_seconds: 1\nhttp_body_timeout_seconds: 1\nhttp_keep_alive_seconds: 1\n"
        "http_write_timeout_seconds: 1\n"
        "http_max_header_bytes: 4096\nmax_request_bytes: 1048576\n"
        "grpc_max_connection_age_seconds: 1\ngrpc_max_connection_age_grace_seconds: 1\n"
        "grpc_min_ping_interval_seconds: 30\n",
    )
    with ServerProcess(demo_repo, "--config", str(config)) as proc:
        yield proc


@pytest.fixture(scope="module", params=HTTP_SERVERS)
def limited(
    demo_repo: Path, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[ServerProcess]:
    """At most 3 REST connections; long deadlines so held connections stay open."""
    config = _config(
        tmp_path_factory.mktemp("limited"),
        "gateway.yaml",
        f"http_server: {request.param}\nhttp_max_connections: {LIMITED_CONNECTIONS}\nhttp_header_timeout_seconds: 600\n"
        "http_keep_alive_seconds: 600\n",
    )
    with ServerProcess(demo_repo, "--config", str(config)) as proc:
        yield proc


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=HANG_GUARD)
    sock.settimeout(HANG_GUARD)
    return sock


def _read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a reset counts as closed)."""
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def _status_and_body(raw: bytes) -> tuple[int, bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def _read_response(sock: socket.socket) -> bytes:
    """One whole response (head and Content-Length body), however the bytes are split in transit."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def _served(port: int) -> socket.socket | None:
    """A connection that has had one request answered 200 and stays open, or None if it was refused."""
    sock = _connect(port)
    try:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        if _read_response(sock).startswith(b"HTTP/1.1 200"):
            return sock
    except (BrokenPipeError, ConnectionResetError):
        pass
    sock.close()
    return None


def _get(port: int, path: str = "/v2/health/live") -> int:
    return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=HANG_GUARD).status_code


# -- REST -----------------------------------------------------------------------------


def test_partial_headers_are_cut_off_while_normal_requests_succeed(server: ServerProcess) -> None:
    slow = [_connect(server.http) for _ in range(20)]
    for sock in slow:
        sock.sendall(b"POST /v2/models/digits_mlp/infer HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    assert _get(server.http) == 200  # the server is not held up by them
    for sock in slow:
        status, body = _status_and_body(_read_until_closed(sock))
        sock.close()
        assert status == 408 and "headers not received within 1 s" in orjson.loads(body)["error"]
    assert _get(server.http) == 200


def test_a_trickling_client_is_cut_off_by_the_header_deadline(server: ServerProcess) -> None:
    """Bytes keep arriving (which resets uvicorn's own keep-alive timer), yet the deadline holds."""
    sock = _connect(server.http)
    request = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * 4000
    received = b""
    with sock:
        for byte in request:  # one byte per pacing interval; stops as soon as the server answers or closes
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            readable, _, _ = select.select([sock], [], [], 0.05)
            if readable:
                received = _read_until_closed(sock)
                break
        else:
            pytest.fail("the server never cut off a client trickling its headers")
    assert received == b"" or _status_and_body(received)[0] in (408, 431)


def test_partial_body_is_cut_off(server: ServerProcess) -> None:
    with _connect(server.http) as sock:
        sock.sendall(
            b"POST /v2/models/digits_mlp/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n" + b'{"inputs": ['
        )
        received = _read_until_closed(sock)
    assert b" 200 " not in received.split(b"\r\n", 1)[0]
    assert _get(server.http) == 200


def test_idle_keep_alive_connection_is_closed(server: ServerProcess) -> None:
    with _connect(server.http) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _read_response(sock).startswith(b"HTTP/1.1 200")
        assert _read_until_closed(sock) == b""  # then nothing more: the idle connection is closed


def test_a_client_that_reads_none_of_its_answers_is_cut_off(server: ServerProcess) -> None:
    # 20,000 pipelined metadata requests (about 1 MB, which the socket buffers take whole) whose answers
    # (several MiB) are never read: the server answers until the client is behind, then resets the connection
    # once the write timeout (1 s here; 60 s by default, past this test's wait) has passed.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(HANG_GUARD)
    with sock:
        sock.connect(("127.0.0.1", server.http))
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(b"GET /v2/models/digits_mlp HTTP/1.1\r\nHost: x\r\n\r\n" * 20_000)
        assert reset_within(sock, HANG_GUARD / 2)
    assert _get(server.http) == 200  # and everyone else is served


def test_headers_over_the_limit_get_431(server: ServerProcess) -> None:
    with _connect(server.http) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8000 + b"\r\n\r\n")
        status, body = _status_and_body(_read_until_closed(sock))
    assert status == 431 and "over the limit of 4096 bytes" in orjson.loads(body)["error"]


def test_malformed_request_gets_json_400(server: ServerProcess) -> None:
    with _connect(server.http) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost x\r\n\r\n")
        status, body = _status_and_body(_read_until_closed(sock))
    assert status == 400 and orjson.loads(body) == {"error": "malformed HTTP request"}


@pytest.mark.parametrize(
    "path",
    [
        "/v2/models/digits_mlp/infer",
        "/v2/models/digits_mlp/versions/1/infer",
        "/v2/repository/index",
        "/v1/models/digits_mlp:predict",
        "/v1/models/digits_mlp/versions/1:predict",
    ],
)
def test_declared_body_over_max_request_bytes_is_refused_unread(server: ServerProcess, path: str) -> None:
    """4 GiB declared, nothing sent: 413 at once, and the connection is closed."""
    with _connect(server.http) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {4 << 30}\r\n\r\n".encode())
        status, body = _status_and_body(_read_until_closed(sock))
    assert status == 413 and "over the limit of 1048576 bytes" in orjson.loads(body)["error"]


def test_chunked_body_over_max_request_bytes_is_cut_off(server: ServerProcess) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(64):
            yield b"x" * 65536

    r = httpx.post(f"{server.url}/v2/repository/index", content=chunks(), timeout=HANG_GUARD)
    assert r.status_code == 413


def test_connections_over_the_limit_are_refused_at_once(limited: ServerProcess) -> None:
    held: list[socket.socket] = []
    try:
        deadline = time.monotonic() + HANG_GUARD
        while len(held) < LIMITED_CONNECTIONS:  # earlier connections (the readiness probe) may still be closing
            sock = _served(limited.http)
            if sock is not None:
                held.append(sock)
            assert time.monotonic() < deadline, "could not open the allowed connections"
        with _connect(limited.http) as extra:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # already refused and closed
                extra.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            received = _read_until_closed(extra)
        if received:  # the 503 arrives unless the close raced the request (then a reset: refused too)
            status, body = _status_and_body(received)
            assert status == 503 and "too many connections" in orjson.loads(body)["error"]
        held.pop().close()
        while (again := _served(limited.http)) is None:  # once a held connection is gone, one more is served
            assert time.monotonic() < deadline + HANG_GUARD, "a freed connection slot was never reused"
        again.close()
    finally:
        for sock in held:
            sock.close()


# -- gRPC -----------------------------------------------------------------------------


async def _wait_for_goaway(target: str, options: Sequence[tuple[str, int]] = (), reconnect: bool = False) -> None:
    """Returns once the server has dropped a ready connection (READY, then any other state).

    A successful call proves the channel was READY; from there ``wait_for_state_change`` watches for the
    next state in gRPC core itself, so a short-lived READY cannot be missed (a ``subscribe`` callback
    reports only the state current when its polling thread runs).
    """
    async with grpc.aio.insecure_channel(target, options=options) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        assert (await stub.ServerLive(pb.ServerLiveRequest(), timeout=HANG_GUARD)).live
        state = channel.get_state()
        while state == grpc.ChannelConnectivity.READY:
            await asyncio.wait_for(channel.wait_for_state_change(state), HANG_GUARD)
            state = channel.get_state()
        if reconnect:
            assert (await stub.ServerLive(pb.ServerLiveRequest(), timeout=HANG_GUARD)).live  # it reconnects


def test_grpc_connection_is_aged_out(server: ServerProcess) -> None:
    asyncio.run(_wait_for_goaway(f"127.0.0.1:{server.grpc}", reconnect=True))


def test_grpc_keepalive_enforcement_sends_away_a_client_pinging_too_often(limited: ServerProcess) -> None:
    """The ``limited`` server keeps connections for an hour: only the pings can get this one dropped."""
    options = [
        ("grpc.keepalive_time_ms", 100),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]
    asyncio.run(_wait_for_goaway(f"127.0.0.1:{limited.grpc}", options))


@pytest.fixture(scope="module")
def one_stream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One concurrent gRPC call per connection, and a model slow enough to hold one open."""
    root = tmp_path_factory.mktemp("streams")
    # 24 x 1500^3 MatMul steps, seconds a call: the test sees it in flight however slowly its polls run.
    write_slow_model(root / "repo" / "slow" / "1" / "model.onnx", repeats=24)
    (root / "repo" / "slow" / "config.yaml").write_text("backend: onnxruntime\n")
    config = _config(root, "gateway.yaml", "grpc_max_concurrent_streams: 1\n")
    with ServerProcess(root / "repo", "--config", str(config)) as proc:
        yield proc


def _inflight(server: ServerProcess) -> float:
    text = httpx.get(f"http://127.0.0.1:{server.metrics}/metrics", timeout=HANG_GUARD).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "modelgate_inflight_requests" and sample.labels.get("protocol") == "grpc":
                return sample.value
    return 0.0


def test_grpc_concurrent_streams_are_limited(one_stream: ServerProcess) -> None:
    """With one stream per connection, a second call on the same channel waits for the first to finish."""
    request = pb.ModelInferRequest(model_name="slow")
    request.inputs.add(name="x", datatype="FP32", shape=[1, 1], contents=pb.InferTensorContents(fp32_contents=[1.0]))
    with grpc.insecure_channel(f"127.0.0.1:{one_stream.grpc}") as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        slow = stub.ModelInfer.future(request, timeout=600)
        deadline = time.monotonic() + HANG_GUARD
        while _inflight(one_stream) < 1:  # the slow call holds the connection's one stream
            assert time.monotonic() < deadline and not slow.done(), "the slow call never started"
        assert stub.ServerLive(pb.ServerLiveRequest(), timeout=600).live
        # The server counts the slow call out before its answer leaves, and the second call could start only
        # once that answer freed the stream. (The client's future may learn of the answer later than this
        # thread does, so ``slow.done()`` here would race on a busy machine.)
        assert _inflight(one_stream) == 0, "a second call ran while the first held the only stream"
        result = slow.result(timeout=HANG_GUARD)
        assert list(result.outputs[0].contents.fp32_contents) or result.raw_output_contents
