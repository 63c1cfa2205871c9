"""PyTorch -> ONNX: the dynamo exporter with a dynamic batch and the weights inside the file.

The dynamo exporter (torch.onnx.export(dynamo=True)) is the maintained path; by default it
writes weights to a separate ``.onnx.data`` file, so ``external_data=False`` is passed.
A TorchScript source cannot go through torch.export, so it uses the legacy exporter
(opset 17, ``dynamic_axes``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from converters.onnx_names import rename_io
from converters.sources import load_exported_program, load_torch
from converters.spec import from_json
from converters.torch2exportedprogram import example_inputs

LEGACY_OPSET = 17


def convert(
    source: str, source_kind: str, output: str, inputs: list[dict[str, Any]], output_names: list[str], precision: str
) -> dict[str, Any]:
    """Step (subprocess): write ``output`` (.onnx, one file) with the spec's input and output names."""
    import onnx
    import torch

    specs = from_json(inputs)
    names = [s.name for s in specs]
    if source_kind == "torch_export":
        program = load_exported_program(Path(source))
        torch.onnx.export(
            program,
            example_inputs(specs),
            output,
            dynamo=True,
            external_data=False,
            input_names=names,
            output_names=output_names,
        )
        method = "torch.onnx.export(dynamo=True, external_data=False)"
    else:
        dynamic = {n: {0: "batch"} for n, s in zip(names, specs, strict=True) if s.shape[0] == -1}
        dynamic.update({n: {0: "batch"} for n in output_names})
        torch.onnx.export(
            load_torch(Path(source), source_kind),
            example_inputs(specs),
            output,
            dynamo=False,
            opset_version=LEGACY_OPSET,
            input_names=names,
            output_names=output_names,
            dynamic_axes=dynamic,
        )
        method = f"torch.onnx.export(dynamo=False, opset {LEGACY_OPSET}) for TorchScript"
    proto = onnx.load(output)
    rename_io(proto, names, output_names)
    onnx.checker.check_model(proto)
    onnx.save(proto, output)
    return {"method": method}
