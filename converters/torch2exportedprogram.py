"""PyTorch -> ``torch.export`` ExportedProgram (.pt2) with a dynamic batch dimension.

:func:`export_module` turns an ``nn.Module`` from the Python API into a .pt2 file, which
then is the source every other PyTorch conversion reads (so steps can run in
subprocesses). The ``convert`` step re-saves a .pt2 source after checking it loads.
No gateway backend serves .pt2 yet, so ``--to all`` leaves it out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from converters.errors import BadInput
from converters.spec import generate_inputs
from gateway.core.types import TensorSpec

#: Largest batch the exported program accepts (torch.export needs a bound).
MAX_BATCH = 4096


def example_inputs(specs: list[TensorSpec]) -> tuple[Any, ...]:
    """Batch-2 example tensors (batch 1 would be specialised as a constant by torch.export)."""
    import torch

    arrays = generate_inputs(specs, 2)
    return tuple(torch.from_numpy(arrays[s.name]) for s in specs)


def dynamic_shapes(specs: list[TensorSpec]) -> dict[str, dict[int, Any]]:
    """``{input: {0: Dim("batch")}}`` for every input whose first dimension is -1."""
    import torch

    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    return {s.name: {0: batch} for s in specs if s.shape and s.shape[0] == -1}


def export_module(module: Any, specs: list[TensorSpec], path: Path) -> None:
    """Export ``module`` (eval mode) with the spec's input names and a dynamic batch to ``path``."""
    import inspect

    import torch

    parameters = [p for p in inspect.signature(module.forward).parameters if p != "self"]
    if parameters != [s.name for s in specs]:
        raise BadInput(f"input spec names {[s.name for s in specs]} must match the forward() arguments {parameters}")
    renamed = {p: dynamic_shapes(specs).get(s.name) for p, s in zip(parameters, specs, strict=True)}
    try:
        program = torch.export.export(module.eval(), example_inputs(specs), dynamic_shapes=renamed)
    except Exception as exc:
        raise BadInput(
            f"torch.export cannot export the module: {type(exc).__name__}: {str(exc).splitlines()[0]}"
        ) from None
    torch.export.save(program, str(path))


def convert(
    source: str, source_kind: str, output: str, inputs: list[dict[str, Any]], output_names: list[str], precision: str
) -> dict[str, Any]:
    """Step (subprocess): copy the .pt2 source to ``output`` through load + save (checks it is whole)."""
    import torch

    from converters.sources import load_exported_program

    torch.export.save(load_exported_program(Path(source)), output)
    return {"method": "torch.export.save"}
