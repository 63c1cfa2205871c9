"""What a benchmarked server is: how to start it, where to send V2 JSON (and V2 gRPC), when it is ready."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path

from bench.peers.envs import PeerEnv

SERVICES = Path(__file__).resolve().parent.parent / "services"
MODEL_NAME = "digits_mlp"
INFER_PATH = f"/v2/models/{MODEL_NAME}/infer"


class NotRun(Exception):
    """The target cannot run here; the message is the reason shown in the table."""


@dataclass(frozen=True)
class Context:
    """What every target gets: its work folder, the ONNX model, the TorchScript model, the project's Python."""

    work: Path
    onnx_model: Path
    torchscript_model: Path
    python: str
    envs: dict[str, PeerEnv]


@dataclass(frozen=True)
class Target:
    """A server to start and measure; ``http_url`` takes the V2 JSON body, ``grpc_port`` V2 gRPC ModelInfer."""

    name: str
    command: list[str]
    ready_url: str
    http_url: str | None = None
    grpc_port: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    setup: str = ""
    """One line on how it runs (workers, threads, logs), for the report."""
    scratch: Path | None = None
    """A folder outside the cache (short Unix socket paths) removed after the run."""
    peer: bool = True
    """False for the gateway and the floors (the ratios compare peers with the gateway)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def folder(ctx: Context, name: str) -> Path:
    path = ctx.work / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def peer_env(ctx: Context, name: str) -> PeerEnv:
    env = ctx.envs.get(name)
    if env is None or not env.ready():
        raise NotRun(f"its virtualenv is not built ({'python -m bench.peers.envs ' + name})")
    return env
