"""Ray Serve (services/ray_onnx.py): a local Ray on 127.0.0.1, one replica, no dashboard, no access log."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from bench.peers.targets.base import INFER_PATH, SERVICES, Context, Target, folder, free_port, peer_env


def prepare(ctx: Context) -> Target:
    env = peer_env(ctx, "rayserve")
    home = folder(ctx, "rayserve")
    port = free_port()
    # Ray's session folder holds Unix sockets: a short path keeps them under the 107-byte limit.
    temp = tempfile.mkdtemp(prefix="mg-ray-")
    environment = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_SERVE_ENABLE_ACCESS_LOG": "0"}
    return Target(
        name="rayserve",
        command=[
            str(env.python),
            str(SERVICES / "ray_onnx.py"),
            "--model",
            str(ctx.onnx_model),
            "--port",
            str(port),
            "--temp-dir",
            temp,
        ],
        env=environment,
        cwd=home,
        ready_url=f"http://127.0.0.1:{port}/-/routes",
        http_url=f"http://127.0.0.1:{port}{INFER_PATH}",
        scratch=Path(temp),
        setup="Ray Serve 2.60.0, 1 replica, max_ongoing_requests 128, no dashboard, access log off",
    )
