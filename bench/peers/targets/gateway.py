"""The gateway itself (``modelgate serve``) on a copy of the demo digits_mlp version, with its demo config:
one serving process (``gateway``), and ``--workers 2`` (``gateway-w2``: every core of a 2-core machine, as
TorchServe's and Ray Serve's several processes use)."""

from __future__ import annotations

import os
import shutil

from bench.peers.targets.base import INFER_PATH, MODEL_NAME, Context, Target, folder, free_port


def prepare(ctx: Context) -> Target:
    return _prepare(ctx, "gateway", 1)


def prepare_workers(ctx: Context) -> Target:
    return _prepare(ctx, "gateway-w2", 2)


def _prepare(ctx: Context, name: str, workers: int) -> Target:
    repo = folder(ctx, name) / "repo"
    source = ctx.onnx_model.parent.parent  # <repo>/digits_mlp
    if not (repo / MODEL_NAME).exists():
        shutil.copytree(source, repo / MODEL_NAME, ignore=shutil.ignore_patterns(".modelgate"))
    http, grpc, metrics = free_port(), free_port(), free_port()
    return Target(
        name=name,
        command=[
            ctx.python,
            "-m",
            "gateway.cli",
            "serve",
            "--model-repository",
            str(repo),
            "--http-port",
            str(http),
            "--grpc-port",
            str(grpc),
            "--metrics-port",
            str(metrics),
            "--log-level",
            "warning",
            "--workers",
            str(workers),
        ],
        env={**os.environ, "MODELGATE_MANAGEMENT_PORT": "0"},
        ready_url=f"http://127.0.0.1:{http}/v2/models/{MODEL_NAME}/ready",
        http_url=f"http://127.0.0.1:{http}{INFER_PATH}",
        grpc_port=grpc,
        setup=("one process" if workers == 1 else f"{workers} serving processes (`--workers {workers}`)")
        + ", the demo config (ONNX Runtime on a 2-thread pool off the event loop, dynamic batching), "
        "no access log, metrics on",
        peer=False,
    )
