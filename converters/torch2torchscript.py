"""PyTorch -> TorchScript (.pt) by tracing, for TorchServe.

TorchScript is deprecated in torch 2.13 (every jit call warns) but TorchServe still
loads it. A .pt2 source is traced through ``ExportedProgram.module()`` at batch 2;
verification at batch 1, 32 and N catches a trace that baked in the batch size. Recurrent
models (LSTM/GRU) are traced at batch 1 and published with the batch pinned to 1, because their
trace fixes the batch of the initial hidden state (wrong values, then a crash, at other sizes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from converters.sources import load_torch
from converters.spec import from_json
from converters.torch2exportedprogram import example_inputs


def convert(
    source: str,
    source_kind: str,
    output: str,
    inputs: list[dict[str, Any]],
    output_names: list[str],
    precision: str,
    trace_batch: int | None = None,
) -> dict[str, Any]:
    """Step (subprocess): write ``output`` (.pt, TorchScript).

    ``trace_batch`` pins the batch size: the trace runs at that batch, and the version's
    config declares it (for models whose trace fixes the batch, e.g. LSTM/GRU initial states).
    """
    import torch

    module = load_torch(Path(source), source_kind)
    if source_kind == "torchscript":
        torch.jit.save(module, output)
        return {"method": "torch.jit.save (already TorchScript)"}
    specs = from_json(inputs)
    example = example_inputs(specs) if trace_batch is None else tuple(t[:trace_batch] for t in example_inputs(specs))
    with torch.no_grad():
        traced = torch.jit.trace(module, example, strict=False)  # type: ignore[no-untyped-call]
    torch.jit.save(traced, output)
    pinned = "" if trace_batch is None else f" at batch {trace_batch} (pinned: the trace fixes the batch size)"
    return {"method": f"torch.jit.trace of ExportedProgram.module(){pinned}"}
