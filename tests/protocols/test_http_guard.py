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

HANG_GUARD = 30.0
MIB = 1024 * 1024
SIZE = 64 * MIB


class BigResponse:
    """Answers every request with ``SIZE`` bytes, one send per MiB; ``sent`` is set after the last send."""

    def __init__(self) -> None:
        self.sent = threading.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % SIZE)]})
        chunk = b"b" * MIB
        for sent in range(MIB, SIZE + 1, MIB):
            await send({"type": "http.response.body", "body": chunk, "more_body": sent < SIZE})
        self.sent.set()


@pytest.fixture
def served() -> Iterator[tuple[BigResponse, int]]:
    app = BigResponse()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)  # connections wait in the backlog until the server accepts them
    config = uvicorn.Config(app, lifespan="off", http=guarded_protocol(ConnectionLimits(write_timeout=0.2)),
                            log_config=None, access_log=False)  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: uvloop.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    try:
        yield app, sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(HANG_GUARD)
        sock.close()


def test_a_client_that_stops_reading_is_cut_off_and_the_handler_released(served: tuple[BigResponse, int]) -> None:
    app, port = served
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.settimeout(HANG_GUARD)
    with client:
        client.connect(("127.0.0.1", port))
        client.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        # The handler waits while the client is behind; once cut off, its last sends return at once.
        assert app.sent.wait(HANG_GUARD)
        received = 0
        try:
            while data := client.recv(MIB):
                received += len(data)
        except ConnectionResetError:
            pass
    assert received < SIZE
