"""The gateway's own HTTP/1.1 server over real sockets: keep-alive, pipelining, chunked bodies both
ways, ``Expect: 100-continue``, HEAD, HTTP/1.0, disconnects, broken applications, and shutdown.

Each server runs on its own event loop in a thread; the tests talk to it with plain sockets, so
every byte on the wire is the server's. No test waits on a clock: a read blocks until the server
answers or closes (with a hang guard), and handlers that must stay busy wait on events the test
releases. (Deadlines, the header limit and the connection limit are covered end to end on
``modelgate serve`` in ``tests/e2e/test_connections.py``.)
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
import uvloop

from gateway.protocols.http_guard import ConnectionLimits
from gateway.protocols.http_server import HttpServer
from tests.sockets import read_to_the_end

HANG_GUARD = 30.0
MIB = 1024 * 1024
DEFAULT_LIMITS = ConnectionLimits()


class App:
    """A small ASGI application whose routes each exercise one part of the server."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.release: asyncio.Event | None = None  # /hold waits for it
        self.holding = threading.Event()  # set once /hold is waiting
        self.big_sent = threading.Event()  # set once /big's handler has made its last send

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope["path"]
        if path == "/echo":
            body = b""
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    self.events.append("disconnect")
                    return
                body += message["body"]
                if not message["more_body"]:
                    break
            doc = {"method": scope["method"], "path": path, "query": scope["query_string"].decode(),
                   "length": len(body), "sha": hashlib.sha256(body).hexdigest(),
                   "version": scope["http_version"]}  # fmt: skip
            await _respond(send, 200, orjson.dumps(doc))
        elif path == "/stream":  # no Content-Length: chunked on HTTP/1.1
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
            for part in (b"one,", b"two,", b"three"):
                await send({"type": "http.response.body", "body": part, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        elif path == "/refuse":  # answers without reading the body (like an early 413)
            await _respond(send, 413, b'{"error": "too big"}')
        elif path == "/boom":
            raise RuntimeError("a bug in the application")
        elif path == "/half":  # starts a response and returns without finishing it
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"10")]})
            await send({"type": "http.response.body", "body": b"12345", "more_body": True})
        elif path == "/long":  # more body than its Content-Length
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"3")]})
            await send({"type": "http.response.body", "body": b"12345"})
        elif path == "/short":  # less body than its Content-Length
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"10")]})
            await send({"type": "http.response.body", "body": b"12345"})
        elif path == "/inject":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"x-bad", b"a\r\nx-evil: 1")]})
            await send({"type": "http.response.body", "body": b""})
        elif path in ("/big", "/mib", "/kib"):
            await self._large(scope, send)
        elif path == "/hold":
            assert self.release is not None
            self.holding.set()
            await self.release.wait()
            await _respond(send, 200, b"released")
        else:
            await _respond(send, 404, b'{"error": "no such route"}')

    async def _large(self, scope: dict[str, Any], send: Any) -> None:
        if scope["path"] == "/mib":  # 1 MiB in one send
            self.events.append("mib")
            await _respond(send, 200, b"m" * MIB)
            return
        if scope["path"] == "/kib":  # ?kib=N: N KiB in one send
            self.events.append("kib")
            await _respond(send, 200, b"k" * 1024 * int(scope["query_string"].decode().partition("=")[2]))
            return
        # /big?mib=N: N MiB, one send per MiB (each waits while the client is behind)
        size = int(scope["query_string"].decode().partition("=")[2]) * MIB
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % size)]})
        chunk = b"b" * MIB
        for sent in range(MIB, size + 1, MIB):
            await send({"type": "http.response.body", "body": chunk, "more_body": sent < size})
        self.big_sent.set()


async def _respond(send: Any, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class ServerThread:
    """An :class:`HttpServer` serving :class:`App` on its own uvloop event loop."""

    def __init__(
        self, grace: float = HANG_GUARD, limits: ConnectionLimits = DEFAULT_LIMITS, send_buffer: int = 0
    ) -> None:
        self.app = App()
        self.grace = grace
        self.limits = limits
        self.send_buffer = send_buffer  # bytes; accepted sockets inherit it from the listening one
        self.started = threading.Event()
        self.thread = threading.Thread(target=self._main, daemon=True)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.server: HttpServer | None = None
        self.port = 0

    def __enter__(self) -> ServerThread:
        self.thread.start()
        assert self.started.wait(HANG_GUARD)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _main(self) -> None:
        uvloop.run(self._serve())

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.app.release = asyncio.Event()
        sock = socket.socket()
        if self.send_buffer:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.send_buffer)
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        self.port = sock.getsockname()[1]
        self.server = HttpServer(self.app, self.limits, keep_alive=HANG_GUARD, grace=self.grace)
        self.started.set()
        await self.server.serve([sock])

    def release_holds(self) -> None:
        assert self.loop is not None and self.app.release is not None
        self.loop.call_soon_threadsafe(self.app.release.set)

    def stop(self) -> None:
        if self.thread.is_alive():
            assert self.loop is not None and self.server is not None
            self.loop.call_soon_threadsafe(self.server.stop)
            self.thread.join(HANG_GUARD)

    def connect(self, receive_buffer: int = 0) -> Conn:
        """A client connection; ``receive_buffer`` (bytes) makes its socket's receive buffer small."""
        sock = socket.socket()
        if receive_buffer:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.settimeout(HANG_GUARD)
        try:
            sock.connect(("127.0.0.1", self.port))
        except OSError:
            sock.close()
            raise
        return Conn(sock)

    def open_connections(self) -> int:
        assert self.server is not None
        return self.server.open_connections


class Conn:
    """A client connection that reads whole responses (Content-Length, chunked, or to the close)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buffer += data
        return bool(data)

    def _take_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            if not self._fill():
                raise ConnectionError(f"closed before {marker!r}: {self.buffer!r}")
        head, _, self.buffer = self.buffer.partition(marker)
        return head

    def _take(self, n: int) -> bytes:
        while len(self.buffer) < n:
            if not self._fill():
                raise ConnectionError("closed inside a body")
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def response(self, head_request: bool = False) -> tuple[int, dict[str, str], bytes]:
        head = self._take_until(b"\r\n\r\n").decode("latin-1")
        status_line, *lines = head.split("\r\n")
        headers: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        status = int(status_line.split()[1])
        if head_request or status == 100:
            return status, headers, b""
        if "content-length" in headers:
            return status, headers, self._take(int(headers["content-length"]))
        if headers.get("transfer-encoding") == "chunked":
            body = b""
            while True:
                size = int(self._take_until(b"\r\n"), 16)
                if size == 0:
                    self._take_until(b"\r\n")
                    return status, headers, body
                body += self._take(size)
                self._take(2)
        while self._fill():  # the body runs to the close
            pass
        body, self.buffer = self.buffer, b""
        return status, headers, body

    def closed(self) -> bool:
        """Whether the server closed the connection (blocks until it sends something or closes); if it
        did, this side is closed too."""
        try:
            gone = not self._fill()
        except ConnectionResetError:
            gone = True
        if gone:
            self.close()
        return gone

    def read_to_the_end(self) -> int:
        """Reads until the server closes or resets the connection (then closes this side); how many bytes came."""
        total = len(self.buffer) + read_to_the_end(self.sock)
        self.close()
        return total

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    with ServerThread() as running:
        yield running


def post(path: str, body: bytes, extra: str = "") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: {len(body)}\r\n{extra}\r\n"
    return head.encode() + body


def test_keep_alive_serves_many_requests_on_one_connection(server: ServerThread) -> None:
    conn = server.connect()
    for n in range(5):
        body = b"x" * (n * 1000)
        conn.send(post(f"/echo?n={n}", body))
        status, headers, payload = conn.response()
        doc = orjson.loads(payload)
        assert status == 200
        assert (doc["length"], doc["query"], doc["method"]) == (len(body), f"n={n}", "POST")
        assert "connection" not in headers and "date" in headers
    conn.close()


def test_pipelined_requests_are_answered_in_order(server: ServerThread) -> None:
    conn = server.connect()
    conn.send(b"".join(post(f"/echo?n={n}", str(n).encode() * n) for n in range(1, 9)))
    answers = [orjson.loads(conn.response()[2]) for _ in range(8)]
    assert [a["query"] for a in answers] == [f"n={n}" for n in range(1, 9)]
    assert [a["length"] for a in answers] == list(range(1, 9))
    conn.close()


def test_chunked_request_body_is_reassembled(server: ServerThread) -> None:
    parts = [b"a" * 10, b"b" * 70000, b"c"]
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
    conn = server.connect()
    conn.send(b"POST /echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n" + chunked)
    doc = orjson.loads(conn.response()[2])
    assert doc["length"] == 70011
    assert doc["sha"] == hashlib.sha256(b"".join(parts)).hexdigest()
    conn.close()


def test_large_body_in_many_segments_is_read_whole(server: ServerThread) -> None:
    body = bytes(range(256)) * 8192  # 2 MiB: reading pauses and resumes as the handler takes it
    conn = server.connect()
    conn.send(post("/echo", body))
    doc = orjson.loads(conn.response()[2])
    assert (doc["length"], doc["sha"]) == (len(body), hashlib.sha256(body).hexdigest())
    conn.close()


def test_response_without_length_is_chunked_and_the_connection_stays_open(server: ServerThread) -> None:
    conn = server.connect()
    conn.send(b"GET /stream HTTP/1.1\r\nhost: x\r\n\r\n")
    status, headers, body = conn.response()
    assert (status, headers["transfer-encoding"], body) == (200, "chunked", b"one,two,three")
    conn.send(post("/echo", b"again"))
    assert orjson.loads(conn.response()[2])["length"] == 5
    conn.close()


def test_head_gets_the_headers_without_a_body(server: ServerThread) -> None:
    conn = server.connect()
    conn.send(b"HEAD /echo HTTP/1.1\r\nhost: x\r\n\r\n")
    status, headers, _ = conn.response(head_request=True)
    assert status == 200 and int(headers["content-length"]) > 0
    conn.send(post("/echo", b"next"))  # no stray body bytes precede the next response
    assert orjson.loads(conn.response()[2])["length"] == 4
    conn.close()


def test_expect_100_continue_is_answered_before_the_body_is_sent(server: ServerThread) -> None:
    conn = server.connect()
    conn.send(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n")
    assert conn.response()[0] == 100
    conn.send(b"hello")
    status, _, body = conn.response()
    assert status == 200 and orjson.loads(body)["length"] == 5
    conn.close()


def test_a_refused_upload_never_gets_100_continue_and_the_connection_closes(server: ServerThread) -> None:
    conn = server.connect()
    conn.send(b"POST /refuse HTTP/1.1\r\nhost: x\r\ncontent-length: 1000000\r\nexpect: 100-continue\r\n\r\n")
    status, headers, _ = conn.response()
    assert (status, headers["connection"]) == (413, "close")
    assert conn.closed()


def test_http_1_0_closes_unless_asked_to_keep_alive(server: ServerThread) -> None:
    conn = server.connect()
    conn.send(b"GET /echo HTTP/1.0\r\n\r\n")
    status, headers, body = conn.response()
    assert (status, headers["connection"], orjson.loads(body)["version"]) == (200, "close", "1.0")
    assert conn.closed()
    conn = server.connect()
    conn.send(b"GET /echo HTTP/1.0\r\nconnection: keep-alive\r\n\r\n")
    assert conn.response()[1]["connection"] == "keep-alive"
    conn.send(b"GET /stream HTTP/1.0\r\nconnection: keep-alive\r\n\r\n")  # no length: the close ends the body
    status, headers, body = conn.response()
    assert (status, headers["connection"], body) == (200, "close", b"one,two,three")
    conn.close()


def test_connection_close_from_the_client_is_honoured(server: ServerThread) -> None:
    conn = server.connect()
    conn.send(post("/echo", b"bye", "connection: close\r\n"))
    assert conn.response()[1]["connection"] == "close"
    assert conn.closed()


def test_malformed_request_gets_a_json_400_and_the_connection_closes(server: ServerThread) -> None:
    conn = server.connect()
    conn.send(b"NOT HTTP AT ALL\r\n\r\n")
    status, headers, body = conn.response()
    assert (status, headers["content-type"], orjson.loads(body)) == (
        400, "application/json", {"error": "malformed HTTP request"})  # fmt: skip
    assert conn.closed()


def test_percent_encoded_path_is_decoded(server: ServerThread) -> None:
    conn = server.connect()
    conn.send(b"GET /%65cho?a=%20 HTTP/1.1\r\nhost: x\r\n\r\n")
    doc = orjson.loads(conn.response()[2])
    assert (doc["path"], doc["query"]) == ("/echo", "a=%20")
    conn.close()


@pytest.mark.parametrize("path", ["/boom", "/inject", "/long"])
def test_an_application_error_before_the_response_is_a_json_500(server: ServerThread, path: str) -> None:
    conn = server.connect()
    conn.send(f"GET {path} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
    status, _, body = conn.response()
    assert (status, orjson.loads(body)) == (500, {"error": "internal error"})
    assert b"evil" not in body
    assert conn.closed()


@pytest.mark.parametrize("path", ["/half", "/short"])
def test_an_unfinished_response_ends_the_connection(server: ServerThread, path: str) -> None:
    conn = server.connect()
    conn.send(f"GET {path} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
    with pytest.raises(ConnectionError):
        conn.response()  # 5 of the 10 promised bytes, then the close
    conn.close()


def test_a_client_gone_mid_body_is_a_disconnect_for_the_handler(server: ServerThread) -> None:
    before = server.app.events.count("disconnect")
    conn = server.connect()
    conn.send(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\npartial")
    conn.close()
    check = server.connect()  # the server keeps serving others meanwhile
    check.send(post("/echo", b"ok"))
    assert check.response()[0] == 200
    check.close()
    for _ in range(1000):  # the disconnect reaches the handler on the server's loop: wait for it, bounded
        if server.app.events.count("disconnect") > before:
            break
        probe = server.connect()
        probe.send(b"GET /nothing HTTP/1.1\r\nhost: x\r\n\r\n")
        probe.response()
        probe.close()
    assert server.app.events.count("disconnect") == before + 1


def test_stop_finishes_requests_in_flight_closes_idle_connections_and_refuses_new_ones() -> None:
    with ServerThread() as running:
        idle = running.connect()
        idle.send(post("/echo", b"warm"))
        assert idle.response()[0] == 200
        busy = running.connect()
        busy.send(b"GET /hold HTTP/1.1\r\nhost: x\r\n\r\n")
        assert running.app.holding.wait(HANG_GUARD)
        assert running.loop is not None and running.server is not None
        running.loop.call_soon_threadsafe(running.server.stop)
        assert idle.closed()
        running.release_holds()
        status, headers, body = busy.response()
        assert (status, body, headers["connection"]) == (200, b"released", "close")
        assert busy.closed()
        running.thread.join(HANG_GUARD)
        assert not running.thread.is_alive()
        with pytest.raises(OSError):
            running.connect()


def test_stop_closes_what_is_still_busy_after_the_grace_period() -> None:
    with ServerThread(grace=0.2) as running:
        busy = running.connect()
        busy.send(b"GET /hold HTTP/1.1\r\nhost: x\r\n\r\n")
        assert running.app.holding.wait(HANG_GUARD)
        running.stop()  # /hold is never released: the server closes it once the grace has passed
        assert not running.thread.is_alive()
        assert busy.closed()


def _wait_until(condition: Callable[[], bool]) -> bool:
    """Polls ``condition`` for what another thread does, bounded by the hang guard (no timing is asserted)."""
    for _ in range(int(HANG_GUARD / 0.01)):
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def test_a_client_that_stops_reading_is_cut_off_and_the_handler_released() -> None:
    with ServerThread(limits=ConnectionLimits(write_timeout=0.2)) as running:
        conn = running.connect(receive_buffer=4096)
        conn.send(b"GET /big?mib=64 HTTP/1.1\r\nhost: x\r\n\r\n")
        # The handler waits while the client is behind; once cut off, its last sends return at once.
        assert running.app.big_sent.wait(HANG_GUARD)
        assert running.open_connections() == 0
        assert conn.read_to_the_end() < 64 * MIB


def test_pipelined_requests_wait_while_the_client_reads_nothing() -> None:
    # 64 responses of 1 MiB each, never read: the kernel buffers (at most 4 MiB of send buffer here, plus a
    # small receive buffer) and the transport's high-water mark hold a handful of them. The rest must not
    # be run and piled up in memory; the connection is cut off after the write timeout instead.
    with ServerThread(limits=ConnectionLimits(write_timeout=3.0)) as running:
        conn = running.connect(receive_buffer=4096)
        conn.send(b"GET /mib HTTP/1.1\r\nhost: x\r\n\r\n" * 64)
        assert _wait_until(lambda: running.app.events.count("mib") > 0)
        assert _wait_until(lambda: running.open_connections() == 0)
        assert running.app.events.count("mib") < 32
        conn.close()


def test_a_close_with_bytes_unsent_to_a_client_that_reads_nothing_is_cut_off() -> None:
    # 48 KiB with Connection: close, to a client that reads nothing. Small kernel buffers on both sides
    # take part of it; the rest stays in the transport, under its 64 KiB high-water mark, so writing never
    # pauses. A close waits for those bytes to go: the write deadline bounds that wait too.
    with ServerThread(limits=ConnectionLimits(write_timeout=0.2), send_buffer=4096) as running:
        conn = running.connect(receive_buffer=4096)
        conn.send(b"GET /kib?kib=48 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        assert _wait_until(lambda: "kib" in running.app.events)  # answered, so the connection was open
        assert _wait_until(lambda: running.open_connections() == 0)
        assert conn.read_to_the_end() < 48 * 1024


def test_pipelined_responses_to_a_slow_reader_all_arrive_in_order(server: ServerThread) -> None:
    before = server.app.events.count("mib")
    conn = server.connect(receive_buffer=4096)
    conn.send(b"".join(f"GET /{path} HTTP/1.1\r\nhost: x\r\n\r\n".encode() for path in ["mib"] * 12 + ["stream"]))
    bodies = [conn.response()[2] for _ in range(13)]
    assert bodies[:12] == [b"m" * MIB] * 12
    assert bodies[12] == b"one,two,three"
    assert server.app.events.count("mib") == before + 12
    conn.close()


def test_a_queued_request_body_has_no_deadline_while_the_server_holds_it_back() -> None:
    with ServerThread(limits=ConnectionLimits(body_timeout=1.0)) as running:
        conn = running.connect()
        # /hold is answered first; the /echo behind it has sent 3 of its 10 body bytes, and the server reads
        # no more of it until its turn, so its body deadline must not run meanwhile.
        conn.send(b"GET /hold HTTP/1.1\r\nhost: x\r\n\r\n" + post("/echo", b"abc").replace(b"length: 3", b"length: 10"))
        assert running.app.holding.wait(HANG_GUARD)
        time.sleep(1.5)  # longer than the body deadline: gives a deadline that ran while held the time to fire
        conn.send(b"defghij")  # waits in the socket until the server reads again
        running.release_holds()
        assert conn.response()[2] == b"released"
        status, _, body = conn.response()
        assert (status, orjson.loads(body)["length"]) == (200, 10)
        conn.close()
