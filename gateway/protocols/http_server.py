"""The gateway's own HTTP/1.1 server for the REST port: httptools parsing, ASGI to the app.

uvicorn spends about 45 µs of CPU per request on its generality (measured next to a bare
httptools protocol in docs/performance.md), half of what the whole floor server costs. This
server does only what the REST port needs, with the same application interface (ASGI 3, so
:class:`gateway.protocols.http_app.HttpApp` and every route run unchanged) and the same bounds as
:mod:`gateway.protocols.http_guard` puts on uvicorn:

- a **header deadline** from a request's first byte (408 JSON, connection closed), a **body
  deadline** from its headers (connection closed: the handler sees a disconnect), an **idle
  keep-alive** limit between requests (connection closed), all on one lazy timer per connection;
- a **header size limit** counted on the raw bytes before parsing (431 JSON, closed), a
  **connection limit** (503 JSON at once, closed), and a JSON 400 for a request the parser rejects.

HTTP/1.1 as clients use it: keep-alive (HTTP/1.0 closes unless it asks), pipelined requests
answered in order, chunked request bodies, ``Expect: 100-continue`` (answered when the handler
first reads the body, so a refused upload is never sent), HEAD without a body, chunked responses
when the handler gives no Content-Length, and back-pressure both ways (reading pauses while a
body piles up unread or a pipelined request waits; a handler writing to a slow reader waits).
A response's head and a whole body leave in one write. A connection whose request body was not
read to the end (an early 413) is closed after the response. Upgrades (WebSocket, h2c) are
not offered: the request is served as plain HTTP/1.1 and the connection closed.

Shutdown (:meth:`HttpServer.stop`): stop accepting, close idle connections, let requests in
flight finish and close their connections, and after the grace period close whatever is left.
"""

from __future__ import annotations

import asyncio
import email.utils
import http
import logging
import socket
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final, cast
from urllib.parse import unquote

import httptools

from gateway.protocols.http_guard import ConnectionLimits, LazyDeadline, WriteDeadline, error_response, refuse

log = logging.getLogger(__name__)

Message = MutableMapping[str, Any]
App = Callable[[MutableMapping[str, Any], Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
               Awaitable[None]]  # fmt: skip

_END_OF_HEADERS: Final = b"\r\n\r\n"
#: Unread request body kept per connection before reading pauses.
_READ_HIGH_WATER: Final = 256 * 1024
_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
_ASGI: Final = {"version": "3.0", "spec_version": "2.3"}
_DISCONNECT: Final = {"type": "http.disconnect"}

# The phases of a connection, each with its own deadline (None: no deadline).
_IDLE, _HEADERS, _BODY, _ANSWERING = range(4)


class _Dates:
    """The ``date`` header's value, formatted once per second."""

    def __init__(self) -> None:
        self._second = -1
        self._line = b""

    def line(self, now: float) -> bytes:
        second = int(now)
        if second != self._second:
            self._second = second
            self._line = b"date: " + email.utils.formatdate(usegmt=True).encode() + b"\r\n"
        return self._line


#: Status lines already formatted, by status code.
_STATUS_LINES: dict[int, bytes] = {}


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        try:
            reason = http.HTTPStatus(status).phrase.encode()
        except ValueError:
            reason = b""
        line = _STATUS_LINES[status] = b"HTTP/1.1 %d %s\r\n" % (status, reason)
    return line


class _State:
    """What every connection of one server shares."""

    def __init__(self, app: App, limits: ConnectionLimits, keep_alive: float, scheme: str) -> None:
        self.app = app
        self.limits = limits
        self.keep_alive = keep_alive
        self.scheme = scheme
        self.connections: set[HttpConnection] = set()
        self.closing = False
        self.dates = _Dates()
        self.all_closed: asyncio.Event | None = None  # set by stop(): wakes when the last connection closes


class _Exchange:
    """One request and its response: the ASGI ``receive`` and ``send`` of one application call."""

    __slots__ = ("body_done", "buffered", "chunked", "chunks", "conn", "continue_wanted", "done", "head",
                 "keep_alive", "lost", "remaining", "scope", "started", "taken", "waiter", "written")  # fmt: skip

    def __init__(self, conn: HttpConnection, scope: dict[str, Any], keep_alive: bool, continue_wanted: bool) -> None:
        self.conn = conn
        self.scope = scope
        self.keep_alive = keep_alive
        self.continue_wanted = continue_wanted
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.body_done = False
        self.taken = False  # the whole body handed to the application
        self.waiter: asyncio.Future[None] | None = None
        self.lost = False
        self.started = False  # http.response.start received
        self.head: bytes | None = None  # the response head, until it is written with the first body bytes
        self.chunked = False
        self.remaining = -1  # body bytes still owed under the response's Content-Length (-1: none declared)
        self.written = False  # anything of the response written
        self.done = False  # the whole response written

    # -- request body --------------------------------------------------------------------

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def receive(self) -> Message:
        if self.lost or self.done:
            return _DISCONNECT
        if self.taken:  # the whole body was read already: ASGI waits for the disconnect
            self.waiter = self.conn.loop.create_future()
            await self.waiter
            return _DISCONNECT
        if not self.chunks and not self.body_done:
            conn = self.conn
            if self.continue_wanted:
                self.continue_wanted = False
                conn.transport.write(_CONTINUE)
            conn.body_wanted()
            self.waiter = conn.loop.create_future()
            await self.waiter
            if self.lost:
                return _DISCONNECT
        chunks = self.chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.taken = self.body_done
        self.chunks = []
        if self.buffered > _READ_HIGH_WATER:
            self.conn.body_wanted()
        self.buffered = 0
        return {"type": "http.request", "body": body, "more_body": not self.body_done}

    # -- response ------------------------------------------------------------------------

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.body":
            if not self.started or self.done:
                raise RuntimeError("http.response.body sent " + ("after the response" if self.done else "first"))
            if self.lost:
                return
            body = message.get("body", b"")
            more = message.get("more_body", False)
            conn = self.conn
            if self.chunked:
                data = b"%x\r\n%s\r\n" % (len(body), body) if body else b""
                if not more:
                    data += b"0\r\n\r\n"
            elif self.scope["method"] == "HEAD":
                data = b""
            else:
                data = body
                if self.remaining >= 0:
                    self._count(len(body), more)
            head = self.head
            if head is not None:
                self.head = None
                data = head + data
            if data:
                conn.transport.write(data)
                self.written = True
            if not more:
                self.done = True
                self.wake()
                conn.response_done(self)
            elif conn.write_paused is not None:
                await conn.write_paused
            return
        if kind == "http.response.start":
            if self.started:
                raise RuntimeError("http.response.start sent twice")
            self.started = True
            self.head = self._head(message["status"], message.get("headers", ()))
            return
        raise RuntimeError(f"unexpected ASGI message type {kind!r} on HTTP")

    def _count(self, size: int, more: bool) -> None:
        """Hold the body to its Content-Length: never more (the client would read the excess as the next
        response), and a short body ends the connection (the client is left waiting for the rest)."""
        if size > self.remaining:
            raise RuntimeError(f"response body longer than its Content-Length ({self.remaining} bytes left)")
        self.remaining -= size
        if not more and self.remaining:
            log.error("response to %s ended %d bytes short of its Content-Length; closing the connection",
                      self.scope["path"][:200], self.remaining)  # fmt: skip
            self.keep_alive = False

    def _head(self, status: int, headers: Any) -> bytes:
        lines = [_status_line(status)]
        length_given = False
        for name, value in headers:
            lower = name.lower()
            if lower == b"content-length":
                length_given = True
                if not value.isdigit():
                    raise RuntimeError("the response's Content-Length is not a number")
                self.remaining = int(value)
            elif lower == b"connection" and value.lower() == b"close":
                self.keep_alive = False
                continue
            elif lower == b"transfer-encoding":
                continue  # the server frames the body
            lines.append(b"%s: %s\r\n" % (name, value))
        block = b"".join(lines)
        if block.count(b"\n") != len(lines) or block.count(b"\r") != len(lines):
            raise RuntimeError("a response header name or value contains CR or LF")
        conn = self.conn
        extra = conn.state.dates.line(conn.loop.time())
        if not length_given and self.scope["method"] != "HEAD" and status >= 200 and status not in (204, 304):
            if self.scope["http_version"] == "1.1":
                self.chunked = True
                extra += b"transfer-encoding: chunked\r\n"
            else:
                self.keep_alive = False  # HTTP/1.0: the end of the body is the end of the connection
        if not self.body_done or conn.state.closing:
            self.keep_alive = False  # an unread body cannot be skipped safely; a stopping server closes
        if not self.keep_alive:
            extra += b"connection: close\r\n"
        elif self.scope["http_version"] == "1.0":
            extra += b"connection: keep-alive\r\n"  # asked for by the client; HTTP/1.0 closes otherwise
        return block + extra + b"\r\n"


class HttpConnection(asyncio.Protocol):
    """One client connection: parses requests, runs one exchange at a time, enforces the limits."""

    def __init__(self, state: _State, loop: asyncio.AbstractEventLoop) -> None:
        self.state = state
        self.loop = loop
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.refused = False
        self.server: tuple[str, int] | None = None
        self.client: tuple[str, int] | None = None
        self.write_paused: asyncio.Future[None] | None = None
        self.write_deadline: WriteDeadline | None = None  # made when a client first falls behind
        self.read_paused = False
        # The request being parsed, the one being answered, and parsed ones waiting their turn.
        self.parsing: _Exchange | None = None
        self.active: _Exchange | None = None
        self.waiting: deque[_Exchange] = deque()
        self.task: asyncio.Task[None] | None = None  # the active exchange's (a reference keeps it alive)
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.continue_wanted = False
        self.upgraded = False
        # The one deadline of the current phase.
        self.phase = _HEADERS
        self.header_bytes = 0
        self.deadline = LazyDeadline(loop, self._expired)

    # -- connection ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        state = self.state
        if len(state.connections) >= state.limits.max_connections or state.closing:
            message = (f"too many connections (the limit is {state.limits.max_connections}); retry later"
                       if not state.closing else "the server is shutting down")  # fmt: skip
            transport.write(error_response(503, message))
            transport.close()
            self.refused = True
            return
        state.connections.add(self)
        self.server = _address(transport.get_extra_info("sockname"))
        self.client = _address(transport.get_extra_info("peername"))
        self.deadline.arm(state.limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.deadline.cancel()
        if self.write_deadline is not None:
            self.write_deadline.cancel()
        if self.refused:
            return
        state = self.state
        state.connections.discard(self)
        for exchange in (self.active, self.parsing, *self.waiting):
            if exchange is not None:
                exchange.lost = True
                exchange.wake()
        self.waiting.clear()
        if self.write_paused is not None and not self.write_paused.done():
            self.write_paused.set_result(None)
        if state.all_closed is not None and not state.connections:
            state.all_closed.set()

    def pause_writing(self) -> None:
        """The client reads slower than responses are written: handlers writing wait, no further
        pipelined request starts, and a client that reads nothing for the write timeout is cut off."""
        if self.write_paused is None:
            self.write_paused = self.loop.create_future()
        self._writes_deadline().paused()

    def resume_writing(self) -> None:
        paused, self.write_paused = self.write_paused, None
        if paused is not None and not paused.done():
            paused.set_result(None)
        if self.write_deadline is not None:
            self.write_deadline.resumed()
        if self.active is None and not self.transport.is_closing():
            self._next()

    def shutdown(self) -> None:
        """The server is stopping: close now if idle, else after the response under way."""
        if self.active is None and self.parsing is None and not self.transport.is_closing():
            self.close()

    def close(self) -> None:
        """Close once the buffered response bytes are written, or cut off a client that does not read them."""
        self.transport.close()
        if self.transport.get_write_buffer_size():
            self._writes_deadline().closing()

    def _writes_deadline(self) -> WriteDeadline:
        if self.write_deadline is None:
            self.write_deadline = WriteDeadline(self.loop, self.transport, self.state.limits.write_timeout)
        return self.write_deadline

    # -- bytes in --------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.upgraded:
            return
        if self.phase != _HEADERS and self.phase != _BODY:  # the first byte of the next request
            self.phase = _HEADERS
            self.header_bytes = 0
            self.deadline.arm(self.state.limits.header_timeout)
        if self.phase == _HEADERS:
            end = data.find(_END_OF_HEADERS)
            self.header_bytes += len(data) if end < 0 else end + len(_END_OF_HEADERS)
            limit = self.state.limits.max_header_bytes
            if self.header_bytes > limit:
                self._refuse(431, f"request headers are over the limit of {limit} bytes")
                return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.upgraded = True  # not offered: the request is served, then the connection closed
            if self.parsing is not None:
                self.parsing.keep_alive = False
        except httptools.HttpParserError:
            self._refuse(400, "malformed HTTP request")
            return
        if self.waiting:  # the server holds back the rest of a queued request: its deadline waits too
            self.deadline.clear()

    def body_wanted(self) -> None:
        """A handler waits for body bytes: let them in (unless a pipelined request is queued)."""
        if self.read_paused and not self.waiting:
            self._resume_reading()

    def _pause_reading(self) -> None:
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        self.read_paused = False
        self.transport.resume_reading()
        if not self.deadline.armed and self.phase in (_HEADERS, _BODY):  # a queued request's: its clock restarts
            limits = self.state.limits
            self.deadline.arm(limits.header_timeout if self.phase == _HEADERS else limits.body_timeout)

    # -- httptools callbacks -------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.phase != _HEADERS:  # a pipelined request that arrived with the one before it
            self.phase = _HEADERS
            self.deadline.arm(self.state.limits.header_timeout)
        self.url = b""
        self.headers = []
        self.continue_wanted = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        self.headers.append((name, value))
        if name == b"expect" and value.lower() == b"100-continue":
            self.continue_wanted = True

    def on_headers_complete(self) -> None:
        self.phase = _BODY
        self.deadline.arm(self.state.limits.body_timeout)
        parser = self.parser
        url = self.url
        if url[:1] == b"/":
            raw_path, _, query = url.partition(b"?")
            query = query.partition(b"#")[0]
        else:
            parsed = httptools.parse_url(url)
            raw_path, query = parsed.path or b"/", parsed.query or b""
        try:
            path = raw_path.decode("ascii")
        except UnicodeDecodeError:
            raise httptools.HttpParserError("the request target is not ASCII") from None
        if "%" in path:
            path = unquote(path)
        version = parser.get_http_version()
        scope = {
            "type": "http", "asgi": _ASGI, "http_version": version, "server": self.server, "client": self.client,
            "scheme": self.state.scheme, "method": parser.get_method().decode("ascii"), "root_path": "",
            "path": path, "raw_path": raw_path, "query_string": query, "headers": self.headers,
        }  # fmt: skip
        exchange = _Exchange(self, scope, parser.should_keep_alive(), self.continue_wanted and version == "1.1")
        self.parsing = exchange
        if self.active is None and self.write_paused is None:
            self._start(exchange)
        else:  # pipelined: answered after the one before it (and once the client reads what was sent)
            self.waiting.append(exchange)
            self._pause_reading()

    def on_body(self, body: bytes) -> None:
        exchange = self.parsing
        if exchange is None:
            return
        exchange.chunks.append(body)
        exchange.buffered += len(body)
        if exchange.buffered > _READ_HIGH_WATER:
            self._pause_reading()
        exchange.wake()

    def on_message_complete(self) -> None:
        exchange = self.parsing
        self.parsing = None
        self.phase = _ANSWERING
        self.deadline.clear()
        if exchange is not None:
            exchange.body_done = True
            exchange.wake()

    # -- running exchanges ---------------------------------------------------------------

    def _start(self, exchange: _Exchange) -> None:
        self.active = exchange
        self.task = self.loop.create_task(self._run(exchange))

    async def _run(self, exchange: _Exchange) -> None:
        try:
            await self.state.app(exchange.scope, exchange.receive, exchange.send)
        except Exception:
            log.exception("unexpected error in the HTTP application for %s", exchange.scope["path"][:200])
            self._abandon(exchange)
            return
        if not exchange.done:
            if exchange.started:
                log.error("the HTTP application returned before finishing its response to %s",
                          exchange.scope["path"][:200])  # fmt: skip
            self._abandon(exchange)

    def _abandon(self, exchange: _Exchange) -> None:
        """An exchange ended without a whole response: a 500 if nothing was sent, then close."""
        if exchange.lost or exchange.done:
            return
        exchange.done = True
        if not exchange.written:
            self.transport.write(error_response(500, "internal error"))
        self.close()

    def response_done(self, exchange: _Exchange) -> None:
        if not exchange.keep_alive or self.upgraded:
            self.close()
            return
        self.active = None
        if self.write_paused is None:
            self._next()
        # else the client is behind: resume_writing goes on once it has read enough

    def _next(self) -> None:
        """Between responses: start the next pipelined request, or wait for one (or close, if stopping)."""
        if self.waiting:
            self._start(self.waiting.popleft())
        elif self.state.closing and self.parsing is None:
            self.close()
            return
        elif self.phase == _ANSWERING:
            self.phase = _IDLE
            self.deadline.arm(self.state.keep_alive)
        if self.read_paused and not self.waiting and not self._body_piling():
            self._resume_reading()

    def _body_piling(self) -> bool:
        """The request being parsed has more unread body than reading may run ahead of its handler."""
        return self.parsing is not None and self.parsing.buffered > _READ_HIGH_WATER

    def _expired(self) -> None:
        if self.transport.is_closing():
            return
        if self.phase == _HEADERS:
            log.debug("closing a connection from %s: request headers not complete in time", self.client)
            self._refuse(408, f"request headers not received within {self.state.limits.header_timeout:g} s")
        else:  # the body's deadline (the handler reading it sees a disconnect), or idle keep-alive
            self.close()

    def _refuse(self, status: int, message: str) -> None:
        if not self.transport.is_closing():
            refuse(self.transport, status, message, answering=self.active is not None and not self.active.done)
            self.close()


def _address(value: Any) -> tuple[str, int] | None:
    if isinstance(value, tuple) and len(value) >= 2:
        return str(value[0]), int(value[1])
    return None


class HttpServer:
    """Serves ``app`` on listening sockets until :meth:`stop`, then drains for ``grace`` seconds."""

    def __init__(
        self, app: App, limits: ConnectionLimits, keep_alive: float, grace: float,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:  # fmt: skip
        self.state = _State(app, limits, keep_alive, "https" if ssl_context is not None else "http")
        self.grace = grace
        self.ssl_context = ssl_context
        self._stop = asyncio.Event()

    @property
    def open_connections(self) -> int:
        """Connections open now (refused ones are never counted)."""
        return len(self.state.connections)

    def stop(self) -> None:
        self._stop.set()

    async def serve(self, sockets: list[socket.socket]) -> None:
        loop = asyncio.get_running_loop()
        state = self.state
        servers = [
            await loop.create_server(lambda: HttpConnection(state, loop), sock=sock, ssl=self.ssl_context)
            for sock in sockets
        ]
        try:
            await self._stop.wait()
        finally:
            for server in servers:
                server.close()
            await self._drain()

    async def _drain(self) -> None:
        state = self.state
        state.closing = True
        state.all_closed = asyncio.Event()
        for conn in list(state.connections):
            conn.shutdown()
        if state.connections:
            try:
                await asyncio.wait_for(state.all_closed.wait(), self.grace)
            except TimeoutError:
                log.warning("%d HTTP connection(s) still busy after the grace period: closing them",
                            len(state.connections))  # fmt: skip
        for conn in list(state.connections):
            conn.transport.abort()
