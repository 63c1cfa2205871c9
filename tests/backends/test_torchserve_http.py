"""The request-path HTTP client against a real local asyncio server (real sockets, no mocks)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from gateway.backends.torchserve.http import ConnectFailed, ConnectionLost, HttpPool

pytestmark = pytest.mark.anyio

Reply = Callable[[bytes, asyncio.StreamWriter], Awaitable[bool]]


async def content_length(body: bytes, writer: asyncio.StreamWriter) -> bool:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: keep-alive\r\n\r\n%s" % (len(body), body))
    return True


async def chunked(body: bytes, writer: asyncio.StreamWriter) -> bool:
    half = len(body) // 2
    writer.write(b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n")
    writer.write(b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (half, body[:half], len(body) - half, body[half:]))
    return True


async def close_after(body: bytes, writer: asyncio.StreamWriter) -> bool:
    writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno")
    return False


async def hang_up(body: bytes, writer: asyncio.StreamWriter) -> bool:
    return False


class EchoServer:
    """Reads one POST at a time per connection and answers with ``reply``; counts connections."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length"))  # fmt: skip
                body = await reader.readexactly(length)
                keep = await self.reply(body, writer)
                await writer.drain()
                if not keep:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def serve(reply: Reply) -> AsyncIterator[tuple[EchoServer, int]]:
    echo = EchoServer(reply)
    server = await asyncio.start_server(echo.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield echo, port


@pytest.fixture
async def keepalive() -> AsyncIterator[tuple[EchoServer, int]]:
    async with serve(content_length) as item:
        yield item


async def test_keep_alive_reuses_one_connection(keepalive: tuple[EchoServer, int]) -> None:
    echo, port = keepalive
    pool = HttpPool("127.0.0.1", port)
    for i in range(5):
        response = await pool.post("/p", b"x" * i, "application/octet-stream")
        assert (response.status, response.body) == (200, b"x" * i)
    assert echo.connections == 1
    pool.close()


async def test_concurrent_requests_get_their_own_answers(keepalive: tuple[EchoServer, int]) -> None:
    _echo, port = keepalive
    pool = HttpPool("127.0.0.1", port)
    bodies = [bytes([i]) * (i + 1) for i in range(16)]
    answers = await asyncio.gather(*(pool.post("/p", b, "application/octet-stream") for b in bodies))
    assert [a.body for a in answers] == bodies
    pool.close()


async def test_chunked_response_and_connection_close() -> None:
    async with serve(chunked) as (_echo, port):
        pool = HttpPool("127.0.0.1", port)
        response = await pool.post("/p", b"abcdefg", "application/octet-stream")
        assert (response.status, response.body) == (201, b"abcdefg")
        pool.close()
    async with serve(close_after) as (echo, port):
        pool = HttpPool("127.0.0.1", port)
        for _ in range(2):
            assert (await pool.post("/p", b"", "text/plain")).status == 404
        assert echo.connections == 2  # "Connection: close" was honoured
        pool.close()


async def test_refused_connection_is_connect_failed() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConnectFailed):
        await HttpPool("127.0.0.1", port).post("/p", b"", "text/plain")


async def test_server_hanging_up_mid_request_is_connection_lost() -> None:
    async with serve(hang_up) as (_echo, port):
        with pytest.raises(ConnectionLost):
            await HttpPool("127.0.0.1", port).post("/p", b"abc", "text/plain")
