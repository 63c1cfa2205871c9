"""Bounded HTTP/1.1 connections: uvicorn's httptools protocol with deadlines and limits.

uvicorn has no deadline for receiving a request: its ``timeout_keep_alive`` is restarted by
every byte, so a client trickling partial headers (slowloris) or part of a body holds its
connection, and a file descriptor, for ever. :func:`guarded_protocol` makes a subclass that
enforces, per connection:

- a **header deadline**: the request line and headers must be complete within
  ``header_timeout`` of the request's first byte (of the connection, for the first request);
  otherwise 408 and the connection is closed;
- a **body deadline**: the body must be complete within ``body_timeout`` of the headers;
  otherwise the connection is closed (the handler sees a disconnect);
- a **header size limit**: more than ``max_header_bytes`` of request line plus headers gets
  431 and the connection is closed, before the headers are parsed any further;
- a **connection limit**: a connection beyond ``max_connections`` open ones is answered 503
  at once and closed (never queued, never left hanging);
- a **write deadline**: a response the client has read none of for ``write_timeout`` while the
  transport's buffer is over its high-water mark is cut off (:class:`WriteDeadline`), and so is a
  close (after a response, on keep-alive expiry, on shutdown) with bytes still unsent. (A pipelined
  request's handler runs while the client is behind, but uvicorn makes its first write wait.)

The idle keep-alive timeout between requests stays uvicorn's (``timeout_keep_alive``), which is
sound there because the header deadline starts with the next request's first byte.

One timer per connection, re-armed lazily (:class:`LazyDeadline`, shared with
:mod:`gateway.protocols.http_server`): moving a deadline only stores a number, so the cost on the hot
path is a few attribute writes per request (measured in docs/performance.md).
Every refusal is a JSON ``{"error": ...}`` in the gateway's words, including the 400 for a
request the HTTP parser rejects (uvicorn's own is plain text).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)

_END_OF_HEADERS: Final = b"\r\n\r\n"
#: SO_LINGER on with a zero timeout: closing the socket sends a reset and discards what is unsent.
_RESET: Final = struct.pack("ii", 1, 0)
_REASONS: Final = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large",
                   500: b"Internal Server Error", 503: b"Service Unavailable"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """What a REST connection may take (the ``http_*`` settings)."""

    header_timeout: float = 10.0
    body_timeout: float = 60.0
    max_header_bytes: int = 32 * 1024
    max_connections: int = 1000
    #: How long a response may wait on a client that reads none of it (see :class:`WriteDeadline`).
    write_timeout: float = 60.0


class LazyDeadline:
    """A connection's one deadline at a time, on one lazy timer.

    Moving the deadline only stores a number. The timer, when it fires before the current deadline,
    re-arms itself for the rest, so a kept-alive connection creates about one timer per deadline
    period, not one per request. ``on_expiry`` runs once the deadline has passed.
    """

    __slots__ = ("_at", "_loop", "_on_expiry", "_timer", "_timer_at")

    def __init__(self, loop: asyncio.AbstractEventLoop, on_expiry: Callable[[], None]) -> None:
        self._loop = loop
        self._on_expiry = on_expiry
        self._at: float | None = None  # when the current deadline passes (None: no deadline)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    @property
    def armed(self) -> bool:
        return self._at is not None

    def arm(self, seconds: float) -> None:
        """The deadline is now ``seconds`` from now (earlier or later than before)."""
        self._at = at = self._loop.time() + seconds
        if self._timer is not None and self._timer_at <= at:
            return  # fires earlier and re-arms itself for the rest
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = self._loop.call_at(at, self._fire)

    def clear(self) -> None:
        """No deadline for now (a pending timer finds none when it fires)."""
        self._at = None

    def cancel(self) -> None:
        """No deadline, and no timer: the connection is gone."""
        self._at = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        at = self._at
        if at is None:
            return
        if self._loop.time() < at:
            self._timer_at = at
            self._timer = self._loop.call_at(at, self._fire)
            return
        self._at = None
        self._on_expiry()


class WriteDeadline:
    """The bound on a client that stops reading: its connection is reset (the bytes buffered in the process
    and in the kernel are dropped) once the response has waited ``timeout`` seconds without the client
    reading any of it.

    ``paused()`` when the transport pauses writing (its buffer is over the high-water mark) and
    ``resumed()`` when the client has read enough for it to resume; ``closing()`` after a close with
    bytes still buffered (a close waits for them to be written, so without a deadline a client that never
    reads would keep the connection, and its buffer, for ever). Made lazily: most connections never need it.
    """

    __slots__ = ("_deadline", "_timeout", "_transport")

    def __init__(self, loop: asyncio.AbstractEventLoop, transport: asyncio.WriteTransport, timeout: float) -> None:
        self._transport = transport
        self._timeout = timeout
        self._deadline = LazyDeadline(loop, self._expired)

    def paused(self) -> None:
        self._deadline.arm(self._timeout)

    def resumed(self) -> None:
        if self._transport.is_closing():  # the client read some: it has the timeout again for the rest
            self._deadline.arm(self._timeout)
        else:
            self._deadline.clear()

    def closing(self) -> None:
        if self._transport.get_write_buffer_size():
            self._deadline.arm(self._timeout)

    def cancel(self) -> None:
        self._deadline.cancel()

    def _expired(self) -> None:
        log.debug("cutting off a client that read none of its response for %g s", self._timeout)
        sock = self._transport.get_extra_info("socket")
        if sock is not None:  # a reset, not a close: the kernel drops the unsent bytes too, and the client knows
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
        self._transport.abort()


def error_response(status: int, message: str) -> bytes:
    """A complete HTTP/1.1 response with a JSON error body that closes the connection."""
    body = orjson.dumps({"error": message})
    head = b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
    return head % (status, _REASONS[status], len(body)) + body


def refuse(transport: asyncio.WriteTransport, status: int, message: str, answering: bool) -> None:
    """Answer ``status`` (unless a response is under way: ``answering``) and close the connection."""
    if transport.is_closing():
        return
    if not answering:
        transport.write(error_response(status, message))
    transport.close()


def guarded_protocol(limits: ConnectionLimits) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol class enforcing ``limits`` (pass it as ``uvicorn.Config(http=...)``)."""
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), {"limits": limits})


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """See the module docstring; use :func:`guarded_protocol` to bind the limits."""

    limits: ConnectionLimits = ConnectionLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_headers = True  # the next bytes belong to a request line or headers
        self._header_bytes = 0
        self._deadline = LazyDeadline(self.loop, self._expired)
        self._write_deadline: WriteDeadline | None = None

    # -- connection limit ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.server_state.connections) >= self.limits.max_connections:
            message = f"too many connections (the limit is {self.limits.max_connections}); retry later"
            transport.write(error_response(503, message))
            transport.close()
            self.transport = transport  # so that connection_lost finds it; the connection is never counted
            self._refused = True
            return
        self._refused = False
        super().connection_made(transport)
        self._deadline.arm(self.limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._deadline.cancel()
        if self._write_deadline is not None:
            self._write_deadline.cancel()
        if self._refused:
            return
        super().connection_lost(exc)

    # -- a client that stops reading -------------------------------------------------------

    def pause_writing(self) -> None:
        super().pause_writing()
        self._writes_deadline().paused()

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._write_deadline is not None:
            self._write_deadline.resumed()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._bound_close()

    def timeout_keep_alive_handler(self) -> None:
        super().timeout_keep_alive_handler()
        self._bound_close()

    def shutdown(self) -> None:
        super().shutdown()
        self._bound_close()

    def _bound_close(self) -> None:
        """After a close with bytes still unsent: the client has the write timeout to read them."""
        if self.transport.is_closing():
            self._writes_deadline().closing()

    def _writes_deadline(self) -> WriteDeadline:
        if self._write_deadline is None:
            self._write_deadline = WriteDeadline(self.loop, self.transport, self.limits.write_timeout)
        return self._write_deadline

    # -- header size and deadlines -------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._in_headers:
            if not self._deadline.armed:  # the first byte of the next request on a kept-alive connection
                self._deadline.arm(self.limits.header_timeout)
            end = data.find(_END_OF_HEADERS)
            self._header_bytes += len(data) if end < 0 else end + len(_END_OF_HEADERS)
            if self._header_bytes > self.limits.max_header_bytes:
                self._refuse(431, f"request headers are over the limit of {self.limits.max_header_bytes} bytes")
                return
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._deadline.arm(self.limits.body_timeout)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_headers = True
        self._header_bytes = 0
        self._deadline.clear()
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        self._refuse(400, "malformed HTTP request")

    def _expired(self) -> None:
        if self.transport.is_closing():
            return
        if self._in_headers:
            log.debug("closing a connection from %s: request headers not complete in time", self.client)
            self._refuse(408, f"request headers not received within {self.limits.header_timeout:g} s")
        else:
            log.debug("closing a connection from %s: request body not complete in time", self.client)
            self.transport.close()  # the handler reading the body sees a disconnect

    def _refuse(self, status: int, message: str) -> None:
        refuse(self.transport, status, message, answering=self.cycle is not None and not self.cycle.response_complete)
