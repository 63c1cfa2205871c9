"""PyTorch -> TorchScript (.pt) by tracing, for TorchServe.

TorchScript is deprecated in torch 2.13 (every jit call warns) but TorchServe still
loads it. A .pt2 source is traced through ``ExportedProgram.module()`` at batch 2;
verification at batch 1, 32 and N catches a trace that baked in the batch size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from converters.sources import load_torch
from converters.spec import from_json
from converters.torch2exportedprogram import example_inputs


def convert(
    source: str, source_kind: str, output: str, inputs: list[dict[str, Any]], output_names: list[str], precision: str
) -> dict[str, Any]:
    """Step (subprocess): write ``output`` (.pt, TorchScript)."""
    import torch

    module = load_torch(Path(source), source_kind)
    if source_kind == "torchscript":
        torch.jit.save(module, output)
        return {"method": "torch.jit.save (already TorchScript)"}
    with torch.no_grad():
        traced = torch.jit.trace(module, example_inputs(from_json(inputs)))  # type: ignore[no-untyped-call]
    torch.jit.save(traced, output)
    return {"method": "torch.jit.trace of ExportedProgram.module()"}
