"""The fixed-rate V2 JSON load of the benchmarks: real wrk, pacing its requests, against a real local server.

The server answers as TorchServe does, with a status line whose reason phrase is empty
(``HTTP/1.1 200 ``), which ``h2load --h1`` could not read. Nothing here depends on timing: a slow
machine only lowers the achieved rate, and the checks are that every answer was read and that the
rate was never exceeded (without the pacing, this server answers thousands of requests a second).
wrk comes from Debian (``make test`` installs it).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.v2_overhead import wrk_run

RATE = 40
SECONDS = 2
CONNECTIONS = 4


def _answer(conn: socket.socket, answered: list[bytes]) -> None:
    """One connection until wrk closes or resets it (it may, mid-request, when its time is up)."""
    with conn, contextlib.suppress(ConnectionError):
        _serve(conn, answered)


def _serve(conn: socket.socket, answered: list[bytes]) -> None:
    """HTTP/1.1 keep-alive: read each request (head and Content-Length body), answer with an empty reason.

    ``answered`` gets one entry per request (``list.append`` is atomic: connections run in threads)."""
    pending = b""
    while True:
        while b"\r\n\r\n" not in pending:
            pending = _more(conn, pending)
        head, _, pending = pending.partition(b"\r\n\r\n")
        length = _content_length(head)
        while len(pending) < length:
            pending = _more(conn, pending)
        pending = pending[length:]
        answered.append(head)
        conn.sendall(b"HTTP/1.1 200 \r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\nok")


def _more(conn: socket.socket, pending: bytes) -> bytes:
    chunk = conn.recv(65536)
    if not chunk:
        raise ConnectionAbortedError  # the client closed the connection
    return pending + chunk


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


@pytest.fixture
def empty_reason_server() -> Iterator[tuple[str, list[bytes]]]:
    listener = socket.create_server(("127.0.0.1", 0))
    answered: list[bytes] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=_answer, args=(conn, answered), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/predictions/m", answered
    finally:
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() (close alone does not on Linux)
        listener.close()


def test_paced_wrk_reads_every_answer_and_never_exceeds_the_rate(
    empty_reason_server: tuple[str, list[bytes]], tmp_path: Path
) -> None:
    url, answered = empty_reason_server
    figures = wrk_run(url, b'{"inputs": []}', {"Content-Type": "application/json"}, CONNECTIONS, SECONDS, tmp_path,
                      rate=RATE)  # fmt: skip
    assert figures.errors == 0
    assert answered and figures.rps > 0
    # One slot every 1/RATE s over all connections: at most RATE * SECONDS requests, plus the one that
    # may start at the very end; the server saw every request wrk sent.
    assert len(answered) <= RATE * SECONDS + CONNECTIONS
    assert figures.rps <= RATE * 1.1 + CONNECTIONS / SECONDS
