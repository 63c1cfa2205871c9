"""KServe's Python ModelServer (``kserve`` package) with an ONNX Runtime model (services/kserve_onnx.py)."""

from __future__ import annotations

from bench.peers.targets.base import INFER_PATH, MODEL_NAME, SERVICES, Context, Target, folder, free_port, peer_env


def prepare(ctx: Context) -> Target:
    env = peer_env(ctx, "kserve")
    home = folder(ctx, "kserve")
    http, grpc = free_port(), free_port()
    return Target(
        name="kserve",
        command=[
            str(env.python),
            str(SERVICES / "kserve_onnx.py"),
            "--model",
            str(ctx.onnx_model),
            "--http-port",
            str(http),
            "--grpc-port",
            str(grpc),
        ],
        cwd=home,
        ready_url=f"http://127.0.0.1:{http}/v2/models/{MODEL_NAME}/ready",
        http_url=f"http://127.0.0.1:{http}{INFER_PATH}",
        grpc_port=grpc,
        setup="kserve 0.21.0 ModelServer, 1 worker, latency logging and access log off, ORT in the coroutine",
    )
