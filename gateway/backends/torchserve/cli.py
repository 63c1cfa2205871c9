"""``modelgate torchserve-package``: a TorchScript version from the repository as a TorchServe .mar.

For operators who run TorchServe themselves (``backend: torchserve`` with ``url:``): the
.mar carries the gateway's handler, so the gateway can talk to it without losing dtype or
shape. The managed mode packages on its own and does not need this command.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the subcommand to ``modelgate``'s parser (called by gateway.cli)."""
    p = sub.add_parser(
        "torchserve-package", help="package a TorchScript model version into a TorchServe .mar with the gateway handler"
    )
    p.add_argument("--model-repository", type=Path, default=Path("model_repo"), help="repository (default: model_repo)")
    p.add_argument("--model", required=True, help="model name (a directory of the repository)")
    p.add_argument("--version", type=int, help="version number (default: the highest version with backend torchserve)")
    p.add_argument("--export-path", type=Path, required=True, help="directory for <model>_v<version>.mar")
    p.set_defaults(func=_package)


def _package(args: argparse.Namespace) -> int:
    from gateway.backends.torchserve.package import package_version

    mar = package_version(args.model_repository, args.model, args.version, args.export_path)
    print(mar)
    return 0
