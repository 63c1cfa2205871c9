"""The bare floors of :mod:`bench.floors`: bare ASGI (V2 JSON) and bare grpc.aio (V2 gRPC)."""

from __future__ import annotations

from bench.peers.targets.base import INFER_PATH, Context, Target, free_port


def prepare_rest(ctx: Context) -> Target:
    port = free_port()
    return Target(
        name="floor-asgi",
        command=[ctx.python, "-m", "bench.floors", "rest", "--model", str(ctx.onnx_model), "--port", str(port)],
        ready_url=f"tcp://127.0.0.1:{port}",
        http_url=f"http://127.0.0.1:{port}{INFER_PATH}",
        setup="bare ASGI on uvicorn/uvloop/httptools, orjson, ONNX Runtime inline, no validation",
        peer=False,
    )


def prepare_grpc(ctx: Context) -> Target:
    port = free_port()
    return Target(
        name="floor-grpc",
        command=[ctx.python, "-m", "bench.floors", "grpc", "--model", str(ctx.onnx_model), "--port", str(port)],
        ready_url=f"tcp://127.0.0.1:{port}",
        grpc_port=port,
        setup="bare grpc.aio generic handler, raw tensors, ONNX Runtime inline",
        peer=False,
    )
