"""Ports shared by the serving processes (``SO_REUSEPORT``): reserved by the supervisor, bound by each worker.

The supervisor first binds each port the ordinary way (no ``SO_REUSEPORT``): that fails if anything
already holds it, so two gateways never silently share a port, and turns port 0 into a concrete
port. It then holds a ``SO_REUSEPORT`` socket on that port, bound but never listening (so it is
given no connections), for as long as it runs. Each worker binds and listens on its own
``SO_REUSEPORT`` socket, and the kernel spreads new connections over the listening ones; while
any worker listens, a process that does not share the port (or runs as another user) cannot
bind it. (Before the first worker listens, the held socket alone does not stop another
``SO_REUSEADDR`` bind: it is a reservation of the number, checked by the probe.)
"""

from __future__ import annotations

import socket

BACKLOG = 2048  # uvicorn's default (it listens again with it)


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def bind(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """A TCP socket bound to ``host:port`` (``OSError`` naming the address if it cannot bind)."""
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot bind {host}:{port}: {exc.strerror}") from None
    return sock


def listening(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """:func:`bind`, then listen at once: a server that logs its ports before its accept loop runs (uvicorn
    listens only when its serve task starts) must have the kernel queue early clients, not refuse them."""
    sock = bind(host, port, reuse_port)
    sock.listen(BACKLOG)
    return sock


def reserve(host: str, port: int) -> socket.socket:
    """Hold ``host:port`` (0: a free port) for the workers: a bound, non-listening ``SO_REUSEPORT`` socket."""
    probe = bind(host, port)  # fails if the port is taken, shared or not
    concrete = probe.getsockname()[1]
    probe.close()
    return bind(host, concrete, reuse_port=True)
