"""Regenerate the TF Serving API modules in this package (``python -m gateway.protos.tfserving.generate``).

Why not import ``tensorflow_serving.apis``: its modules import ``tensorflow.core.framework.*_pb2``,
and importing anything under ``tensorflow`` runs ``tensorflow/__init__.py``, which loads the
whole TensorFlow runtime (seconds and hundreds of MB) into a gateway that only needs messages.

Why these modules do not clash with the official ones: they are compiled from the very same
file descriptors (same ``.proto`` file names, same packages ``tensorflow`` and
``tensorflow.serving``, same bytes), so when both are imported into one process the
descriptor pool sees the same file twice, which it accepts, and the wire format is identical.

Two steps:

- ``dump`` (needs ``tensorflow`` and ``tensorflow-serving-api``): writes ``descriptors.binpb``,
  the ``FileDescriptorSet`` of ``prediction_service.proto`` and ``model_service.proto`` with
  every file they import, read from the official modules.
- ``generate`` (needs only ``grpcio-tools``): compiles that set with protoc into
  ``tensorflow/``, ``tensorflow_serving/`` and ``xla/`` below this package and rewrites their
  imports to point here.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DESCRIPTORS = HERE / "descriptors.binpb"
PACKAGE = "gateway.protos.tfserving"
#: Top-level proto directories that are generated here (google/protobuf comes with protobuf itself).
ROOTS = ("tensorflow", "tensorflow_serving", "xla")
SERVICES = ("tensorflow_serving/apis/prediction_service.proto", "tensorflow_serving/apis/model_service.proto")
_IMPORT = re.compile(rf"^(from|import) ({'|'.join(ROOTS)})([. ])", re.MULTILINE)


def dump(target: Path = DESCRIPTORS) -> list[str]:
    """Write the descriptor set of the two services and their imports; returns the file names."""
    from google.protobuf import descriptor_pb2
    from tensorflow_serving.apis import model_service_pb2, prediction_service_pb2

    ordered: list[Any] = []
    for root in (prediction_service_pb2.DESCRIPTOR, model_service_pb2.DESCRIPTOR):
        _collect(root, ordered)
    files = descriptor_pb2.FileDescriptorSet()
    for file in ordered:
        files.file.add().ParseFromString(file.serialized_pb)
    target.write_bytes(files.SerializeToString(deterministic=True))
    return [file.name for file in ordered]


def _collect(file: Any, ordered: list[Any]) -> None:
    """Depth-first, dependencies before dependants, each file once."""
    for dependency in file.dependencies:
        _collect(dependency, ordered)
    if all(seen.name != file.name for seen in ordered):
        ordered.append(file)


def generate(descriptors: Path = DESCRIPTORS, out: Path = HERE) -> list[Path]:
    """Compile the descriptor set into Python modules below ``out``; returns the modules written."""
    from google.protobuf import descriptor_pb2

    files = descriptor_pb2.FileDescriptorSet.FromString(descriptors.read_bytes())
    names = [f.name for f in files.file if f.name.split("/", 1)[0] in ROOTS]
    with tempfile.TemporaryDirectory() as tmp:
        _protoc(descriptors, tmp, ["--python_out", "--pyi_out"], names)
        _protoc(descriptors, tmp, ["--grpc_python_out"], list(SERVICES))
        for root in ROOTS:
            shutil.rmtree(out / root, ignore_errors=True)
            shutil.copytree(Path(tmp) / root, out / root)
    written = sorted(p for root in ROOTS for p in (out / root).rglob("*.py*"))
    for path in written:
        path.write_text(_IMPORT.sub(rf"\1 {PACKAGE}.\2\3", path.read_text(encoding="utf-8")), encoding="utf-8")
    for directory in sorted({p.parent for p in written}):
        for package in (directory, *directory.parents):
            if package == out:
                break
            (package / "__init__.py").touch()
    return written


def _protoc(descriptors: Path, out: str, kinds: list[str], names: list[str]) -> None:
    args = ["grpc_tools.protoc", f"--descriptor_set_in={descriptors}", *(f"{kind}={out}" for kind in kinds), *names]
    command = [sys.executable, "-m", *args]
    subprocess.run(command, check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("step", choices=["dump", "generate", "all"])
    step = parser.parse_args(argv).step
    if step in ("dump", "all"):
        print(f"dumped {len(dump())} files into {DESCRIPTORS}")
    if step in ("generate", "all"):
        print(f"generated {len(generate())} modules below {HERE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
