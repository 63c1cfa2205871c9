"""Seldon MLServer 1.7 with a custom ONNX Runtime runtime (services/mlserver_onnx.py), V2 REST and gRPC."""

from __future__ import annotations

import json
import shutil

from bench.peers.targets.base import INFER_PATH, MODEL_NAME, SERVICES, Context, Target, folder, free_port, peer_env


def prepare(ctx: Context) -> Target:
    env = peer_env(ctx, "mlserver")
    home = folder(ctx, "mlserver")
    model_dir = folder(ctx, f"mlserver/{MODEL_NAME}")
    shutil.copy(SERVICES / "mlserver_onnx.py", model_dir / "mlserver_onnx.py")
    http, grpc = free_port(), free_port()
    # MLServer's advice for cheap models: inference in the main process (parallel_workers 0); debug off
    # turns uvicorn's access log off; no metrics server; no gzip middleware.
    settings = {"host": "127.0.0.1", "http_port": http, "grpc_port": grpc, "debug": False, "parallel_workers": 0,
                "metrics_endpoint": None, "gzip_enabled": False, "load_models_at_startup": True}  # fmt: skip
    (home / "settings.json").write_text(json.dumps(settings))
    model = {"name": MODEL_NAME, "implementation": "mlserver_onnx.OnnxModel",
             "parameters": {"uri": str(ctx.onnx_model)}}  # fmt: skip
    (model_dir / "model-settings.json").write_text(json.dumps(model))
    return Target(
        name="mlserver",
        command=[str(env.bin / "mlserver"), "start", str(home)],
        cwd=home,
        ready_url=f"http://127.0.0.1:{http}/v2/models/{MODEL_NAME}/ready",
        http_url=f"http://127.0.0.1:{http}{INFER_PATH}",
        grpc_port=grpc,
        setup="MLServer 1.7.1, parallel_workers 0, debug/access log off, metrics off, ORT in the coroutine",
    )
