"""BentoML 1.4 service (services/bentoml_onnx.py) served by ``bentoml serve``."""

from __future__ import annotations

import os

from bench.peers.targets.base import INFER_PATH, SERVICES, Context, Target, folder, free_port, peer_env


def prepare(ctx: Context) -> Target:
    env = peer_env(ctx, "bentoml")
    home = folder(ctx, "bentoml")
    port = free_port()
    environment = {**os.environ, "PEER_MODEL": str(ctx.onnx_model), "BENTOML_HOME": str(home / "bentoml_home"),
                   "BENTOML_DO_NOT_TRACK": "True", "PYTHONPATH": str(SERVICES)}  # fmt: skip
    environment.pop("VIRTUAL_ENV", None)
    return Target(
        name="bentoml",
        command=[
            str(env.bin / "bentoml"),
            "serve",
            "bentoml_onnx:DigitsMlp",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=environment,
        cwd=SERVICES,
        ready_url=f"http://127.0.0.1:{port}/readyz",
        http_url=f"http://127.0.0.1:{port}{INFER_PATH}",
        setup="BentoML 1.4.40, 1 worker, access log off, tracking off, ORT in the coroutine",
    )
