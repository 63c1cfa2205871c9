"""Give an ONNX graph's inputs and outputs clear names (``Identity:0`` -> ``probs``).

Exporters name graph outputs after internal ops; clients and configs need the names the
model author chose, so converters rename them positionally after export.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def rename_io(model: Any, input_names: Sequence[str], output_names: Sequence[str]) -> None:
    """Rename graph inputs and outputs in place, by position, rewiring every node that uses them."""
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    real_inputs = [i for i in graph.input if i.name not in initializers]
    mapping = {v.name: new for v, new in zip(real_inputs, input_names, strict=False) if v.name != new}
    mapping.update({v.name: new for v, new in zip(graph.output, output_names, strict=False) if v.name != new})
    if not mapping:
        return
    for value in [*graph.input, *graph.output, *graph.value_info]:
        value.name = mapping.get(value.name, value.name)
    for node in graph.node:
        node.input[:] = [mapping.get(n, n) for n in node.input]
        node.output[:] = [mapping.get(n, n) for n in node.output]
