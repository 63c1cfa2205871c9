"""A client's view of a TCP connection the server cuts off: waiting for the reset without reading, and
reading what is left."""

from __future__ import annotations

import socket
import time

_TCP_CLOSE = 7  # Linux's tcp_states.h: what ``tcpi_state`` becomes once a reset has arrived


def reset_within(sock: socket.socket, seconds: float) -> bool:
    """Polls (bounded) until the server has reset the connection, without reading any of it."""
    for _ in range(int(seconds / 0.01)):
        if sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] == _TCP_CLOSE:
            return True
        time.sleep(0.01)
    return False


def read_to_the_end(sock: socket.socket) -> int:
    """Reads until the server closes or resets the connection; how many bytes came."""
    received = 0
    try:
        while data := sock.recv(1 << 20):
            received += len(data)
    except ConnectionResetError:
        pass
    return received
