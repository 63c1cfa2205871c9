"""Each peer's own virtualenv under a git-ignored cache directory (built once, reused if its pins match).

The pins are the build step: ``pip install`` of the peer's package and ONNX Runtime (the same
version as the gateway's) into ``<cache>/<peer>/venv``. A stamp file holds the pins the venv was
built with; a venv whose stamp differs is rebuilt. Nothing here touches the project's own venv,
and nothing downloads a model.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

#: ONNX Runtime for every peer: the version the gateway runs in this project's venv.
ONNXRUNTIME = "onnxruntime==1.32.0"

#: What each peer's venv holds (pinned).
PINS: dict[str, tuple[str, ...]] = {
    "mlserver": ("mlserver==1.7.1", ONNXRUNTIME),
    "kserve": ("kserve==0.21.0", ONNXRUNTIME),
    "bentoml": ("bentoml==1.4.40", ONNXRUNTIME),
    "rayserve": ("ray[serve]==2.60.0", ONNXRUNTIME),
}

DEFAULT_CACHE = Path(".bench-peers")


@dataclass(frozen=True)
class PeerEnv:
    """A peer's virtualenv: where it is and whether it is ready."""

    name: str
    root: Path

    @property
    def python(self) -> Path:
        return self.root / "venv" / "bin" / "python"

    @property
    def bin(self) -> Path:
        return self.root / "venv" / "bin"

    @property
    def stamp(self) -> Path:
        return self.root / "venv" / ".pins"

    @property
    def log(self) -> Path:
        return self.root / "install.log"

    def wanted(self) -> str:
        return "\n".join(PINS[self.name]) + "\n"

    def ready(self) -> bool:
        return self.python.exists() and self.stamp.exists() and self.stamp.read_text() == self.wanted()


def env_for(name: str, cache: Path = DEFAULT_CACHE) -> PeerEnv:
    return PeerEnv(name, cache.resolve() / name)


def ensure(env: PeerEnv) -> str | None:
    """Build ``env`` if needed; returns None when ready, else a one-line reason it could not be built."""
    if env.ready():
        return None
    venv = env.root / "venv"
    if venv.exists():
        shutil.rmtree(venv)
    env.root.mkdir(parents=True, exist_ok=True)
    with env.log.open("w") as log:
        steps = [
            [sys.executable, "-m", "venv", str(venv)],
            [str(env.python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"],
            [str(env.python), "-m", "pip", "install", "--quiet", *PINS[env.name]],
        ]
        for step in steps:
            if subprocess.run(step, stdout=log, stderr=subprocess.STDOUT, check=False).returncode != 0:
                return f"install failed (`{' '.join(step[1:4])} ...`; see {env.log})"
    env.stamp.write_text(env.wanted())
    return None


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.peers.envs [PEER ...]``: build the peers' venvs (all by default), one at a time."""
    names = (argv if argv is not None else sys.argv[1:]) or list(PINS)
    unknown = [name for name in names if name not in PINS]
    if unknown:
        print(f"bench-peers: unknown peer {unknown[0]!r}; known: {', '.join(PINS)}", file=sys.stderr)
        return 2
    status = 0
    for name in names:
        reason = ensure(env_for(name))
        print(f"{name}: {'ready' if reason is None else reason}", flush=True)
        status |= reason is not None
    return status


if __name__ == "__main__":
    raise SystemExit(main())
