"""The bounds :mod:`gateway.protocols.http_guard` adds to uvicorn (``http_server: uvicorn``), over real sockets.

The deadlines on receiving, the header limit and the connection limit are covered end to end on
``modelgate serve`` with both servers in ``tests/e2e/test_connections.py``; this file covers what needs a
client that stops reading, which no gateway route answers with enough bytes to show.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
import uvloop

from gateway.protocols.http_guard import ConnectionLimits, guarded_protocol
from tests.sockets import read_to_the_end, reset_within

HANG_GUARD = 30.0
MIB = 1024 * 1024
SIZE = 64 * MIB


class BigResponses:
    """``/mib``: 1 MiB in one send (counted in ``mib``); ``/kib``: 48 KiB in one send (``answered`` is set);
    anything else: ``SIZE`` bytes, one send per MiB (``sent`` is set after the last send)."""

    def __init__(self) -> None:
        self.sent = threading.Event()
        self.answered = threading.Event()
        self.mib = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] in ("/mib", "/kib"):
            body = b"m" * MIB if scope["path"] == "/mib" else b"k" * 48 * 1024
            self.mib += scope["path"] == "/mib"
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-length", b"%d" % len(body))]})  # fmt: skip
            await send({"type": "http.response.body", "body": body})
            self.answered.set()
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % SIZE)]})
        chunk = b"b" * MIB
        for sent in range(MIB, SIZE + 1, MIB):
            await send({"type": "http.response.body", "body": chunk, "more_body": sent < SIZE})
        self.sent.set()


@pytest.fixture
def served(request: pytest.FixtureRequest) -> Iterator[tuple[BigResponses, int]]:
    """uvicorn with the guard, on its own event loop in a thread. The param: the write timeout (default
    0.2 s) and the send buffer of the accepted sockets (0: the system's)."""
    write_timeout, send_buffer = getattr(request, "param", (0.2, 0))
    app = BigResponses()
    sock = socket.socket()
    if send_buffer:  # accepted sockets inherit it
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)  # connections wait in the backlog until the server accepts them
    limits = ConnectionLimits(write_timeout=write_timeout)
    config = uvicorn.Config(app, lifespan="off", http=guarded_protocol(limits), log_config=None, access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: uvloop.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    try:
        yield app, sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(HANG_GUARD)
        sock.close()


def _client(port: int) -> socket.socket:
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.settimeout(HANG_GUARD)
    client.connect(("127.0.0.1", port))
    return client


def test_a_client_that_stops_reading_is_cut_off_and_the_handler_released(served: tuple[BigResponses, int]) -> None:
    app, port = served
    with _client(port) as client:
        client.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        # The handler waits while the client is behind; once cut off, its last sends return at once.
        assert app.sent.wait(HANG_GUARD)
        assert read_to_the_end(client) < SIZE


@pytest.mark.parametrize("served", [(3.0, 0)], indirect=True)
def test_pipelined_requests_wait_while_the_client_reads_nothing(served: tuple[BigResponses, int]) -> None:
    # The kernel (at most 4 MiB of send buffer here) and the transport hold a handful of the 64 responses;
    # uvicorn runs the next handler but makes its write wait, so no more are run before the cut-off.
    app, port = served
    with _client(port) as client:
        client.sendall(b"GET /mib HTTP/1.1\r\nhost: x\r\n\r\n" * 64)
        assert reset_within(client, HANG_GUARD)
    assert 0 < app.mib < 32


@pytest.mark.parametrize("served", [(0.2, 4096)], indirect=True)
def test_a_close_with_bytes_unsent_to_a_client_that_reads_nothing_is_cut_off(served: tuple[BigResponses, int]) -> None:
    # 48 KiB and Connection: close to a client that reads nothing: small kernel buffers take part of it, the
    # rest stays in the transport under its high-water mark (writing never pauses), and the close waits for it.
    app, port = served
    with _client(port) as client:
        client.sendall(b"GET /kib HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        assert app.answered.wait(HANG_GUARD)
        assert reset_within(client, HANG_GUARD)
        assert read_to_the_end(client) < 48 * 1024
