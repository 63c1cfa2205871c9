"""Package a TorchScript model version into a TorchServe .mar with the gateway's handler.

Used by the managed TorchServe (which packages each version at load time, into its run
directory, never into the model repository) and by ``modelgate torchserve-package`` for
operators who run TorchServe themselves. torch-model-archiver runs as a child process
of this interpreter: it needs no torch, and its logging setup stays out of the gateway.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from gateway.core.config import ModelConfig
from gateway.core.errors import ConfigError
from gateway.core.repository import scan_model

#: TorchScript file name inside a version directory when config.yaml sets no ``artifact``.
ARTIFACT = "model.pt"
HANDLER = Path(__file__).with_name("handler.py")
FRAMES = Path(__file__).with_name("frames.py")
#: Packaging a small model takes about a second; a hung archiver must not hang the gateway.
ARCHIVE_TIMEOUT = 300.0


def archive(serialized_file: Path, name: str, version: str, export_path: Path) -> Path:
    """Write ``<export_path>/<name>.mar`` (replacing one of the same name) and return its path."""
    if not serialized_file.is_file():
        raise ConfigError(f"{serialized_file}: TorchScript artifact not found")
    export_path.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "model_archiver.model_packaging",
        "--model-name", name,
        "--version", version,
        "--serialized-file", str(serialized_file),
        "--handler", str(HANDLER),
        "--extra-files", str(FRAMES),
        "--export-path", str(export_path),
        "--force",
    ]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=ARCHIVE_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise ConfigError(f"torch-model-archiver did not finish within {ARCHIVE_TIMEOUT:g} s") from None
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise ConfigError(
            f"torch-model-archiver failed for {serialized_file}: {detail[-1] if detail else done.returncode}"
        )
    return export_path / f"{name}.mar"


def version_artifact(config: ModelConfig, version_dir: Path) -> Path:
    """The TorchScript file of one version (``artifact:`` or ``model.pt``)."""
    return version_dir / (config.artifact or ARTIFACT)


def package_version(repository: Path, model: str, version: int | None, export_path: Path) -> Path:
    """Package one version (default: the highest torchserve one) as ``<export_path>/<model>_v<version>.mar``."""
    entry = scan_model(repository / model)
    if entry.error is not None:
        raise ConfigError(f"model {model!r}: {entry.error}")
    candidates = {v.version: v for v in entry.versions if v.source is not None}
    if version is None:
        torchserve = [
            n for n, v in candidates.items() if v.source is not None and v.source.config.backend == "torchserve"
        ]
        if not torchserve:
            raise ConfigError(f"model {model!r} has no valid version with backend: torchserve")
        version = max(torchserve)
    item = candidates.get(version)
    if item is None or item.source is None:
        errors = {v.version: v.error for v in entry.versions if v.error}
        raise ConfigError(
            f"model {model!r} has no valid version {version} (found {sorted(candidates)}; errors {errors})"
        )
    source = item.source
    return archive(
        version_artifact(source.config, source.version_dir), f"{model}_v{version}", str(version), export_path
    )
