"""Entry point of a backend worker process: ``python -m gateway.backends.worker.main``.

The gateway starts one worker per model version that needs a heavy framework
(TensorFlow). The worker imports the framework, loads the model through a *runtime*
class named on the command line, reports the signature, then answers inference frames
(:mod:`gateway.backends.worker.wire`) on the socket it inherited. Several requests are
in flight at once: the main thread only reads frames and hands them to a small thread
pool; replies are written whole, under a lock, in completion order.

The worker exits when the gateway closes the socket, and the kernel SIGKILLs it when the
gateway dies (``PR_SET_PDEATHSIG``, set first thing, before the framework import), so it
never outlives the gateway, even while it is still loading.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import socket
import sys
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np

from gateway.backends.worker import wire
from gateway.backends.worker.keeper import die_with_parent
from gateway.core.errors import ConfigError
from gateway.core.types import Signature


class WorkerRuntime(Protocol):
    """What a framework runtime provides inside the worker (constructed with the JSON spec)."""

    def load(self) -> Signature:
        """Import the framework, load the artifact, return what the artifact declares."""
        ...

    def infer(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str]) -> dict[str, np.ndarray]:
        """Run one request; thread-safe, or serialised by the runtime itself."""
        ...


class _Channel:
    """Blocking frame I/O on the inherited socket; writes from several threads stay whole."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._write_lock = threading.Lock()

    def read(self) -> bytes | None:
        prefix = self._read_exactly(wire.PREFIX_SIZE)
        if prefix is None:
            return None
        return self._read_exactly(wire.frame_length(prefix))

    def send(self, frame: bytes) -> None:
        with self._write_lock:
            self._sock.sendall(frame)

    def _read_exactly(self, size: int) -> bytes | None:
        buffer = bytearray(size)
        view = memoryview(buffer)
        got = 0
        while got < size:
            n = self._sock.recv_into(view[got:])
            if n == 0:
                return None
            got += n
        return bytes(buffer)


def _load_runtime(path: str, spec: dict[str, Any]) -> WorkerRuntime:
    module_name, _, attr = path.partition(":")
    factory = getattr(importlib.import_module(module_name), attr)
    runtime: WorkerRuntime = factory(spec)
    return runtime


def _handle(channel: _Channel, runtime: WorkerRuntime, header: dict[str, Any], tensors: dict[str, np.ndarray]) -> None:
    request_id = int(header["id"])
    try:
        results = runtime.infer(tensors, list(header["outputs"]))
        frame = wire.encode_frame({"id": request_id, "op": "result"}, results)
    except Exception as exc:  # every failure goes back to the caller as an error frame
        frame = wire.encode_frame(wire.error_header(request_id, exc))
    try:
        channel.send(frame)
    except OSError:
        return  # the gateway went away; the read loop ends on EOF


def _serve(channel: _Channel, runtime: WorkerRuntime, threads: int) -> None:
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="worker-infer") as pool:
        while (body := channel.read()) is not None:
            header, tensors = wire.decode_body(body)
            pool.submit(_handle, channel, runtime, header, tensors)


def _hello(runtime: WorkerRuntime) -> dict[str, Any]:
    try:
        signature = runtime.load()
    except ConfigError as exc:
        return {"id": 0, "op": "error", "kind": wire.CONFIG_KIND, "message": str(exc)}
    except Exception as exc:  # an artifact the framework rejects is a load failure, reported as such
        return {**wire.error_header(0, exc), "kind": wire.CONFIG_KIND}
    return {"id": 0, "op": "ready", "pid": os.getpid(), "signature": wire.signature_to_json(signature)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.backends.worker.main")
    parser.add_argument("--fd", type=int, required=True, help="inherited socket to the gateway")
    parser.add_argument("--runtime", required=True, help="module:factory of the in-worker runtime")
    parser.add_argument("--spec", required=True, help="JSON given to the runtime factory")
    parser.add_argument("--threads", type=int, default=2, help="requests executed in parallel")
    parser.add_argument("--parent-pid", type=int, default=None, help="the gateway: die with it")
    args = parser.parse_args(argv)
    if args.parent_pid is not None:
        die_with_parent(args.parent_pid)
    channel = _Channel(socket.socket(fileno=args.fd))
    try:
        runtime = _load_runtime(args.runtime, json.loads(args.spec))
        hello = _hello(runtime)
    except Exception as exc:  # a bad runtime path or spec: report it rather than die silently
        hello = {**wire.error_header(0, exc), "kind": wire.CONFIG_KIND}
    channel.send(wire.encode_frame(hello))
    if hello["op"] != "ready":
        return 2
    _serve(channel, runtime, max(1, args.threads))
    return 0


if __name__ == "__main__":
    sys.exit(main())
