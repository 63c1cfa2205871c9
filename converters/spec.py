"""Input specs: the names, datatypes and shapes a source model takes.

The CLI form is ``NAME:DATATYPE:DIM,DIM,...`` (``image:FP32:-1,1,8,8``), one per
``--input-spec``; -1 marks a dynamic dimension. Specs cross process boundaries as JSON
dicts, so they are converted with :func:`to_json` / :func:`from_json`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from converters.errors import BadInput
from gateway.core.codec.datatypes import DATATYPES, numpy_dtype
from gateway.core.types import TensorSpec


def parse_input_spec(text: str) -> TensorSpec:
    """One ``NAME:DATATYPE:DIMS`` item, or :class:`BadInput` saying which part is wrong."""
    parts = text.split(":")
    if len(parts) != 3 or not parts[0]:
        raise BadInput(f"--input-spec {text!r}: expected NAME:DATATYPE:DIM,DIM,... e.g. image:FP32:-1,1,8,8")
    name, datatype, dims = parts
    if datatype.upper() not in DATATYPES or datatype.upper() == "BYTES":
        raise BadInput(f"--input-spec {text!r}: unknown datatype {datatype!r}; use FP32, FP16, INT64, ...")
    try:
        shape = tuple(int(d) for d in dims.split(","))
    except ValueError:
        raise BadInput(f"--input-spec {text!r}: dimensions must be integers separated by commas") from None
    if any(d == 0 or d < -1 for d in shape):
        raise BadInput(f"--input-spec {text!r}: dimensions must be positive or -1 (dynamic)")
    return TensorSpec(name, datatype.upper(), shape)


def to_json(specs: list[TensorSpec]) -> list[dict[str, Any]]:
    """Specs as plain dicts (for subprocess payloads and reports)."""
    return [s.to_dict() for s in specs]


def from_json(items: list[dict[str, Any]]) -> list[TensorSpec]:
    """The inverse of :func:`to_json`."""
    return [TensorSpec(str(i["name"]), str(i["datatype"]), tuple(int(d) for d in i["shape"])) for i in items]


def concrete_shape(spec: TensorSpec, batch: int) -> tuple[int, ...]:
    """The spec's shape with the batch (first) dimension set; other dynamic dims must not exist."""
    if any(d == -1 for d in spec.shape[1:]):
        raise BadInput(
            f"input {spec.name!r} has dynamic non-batch dimensions {list(spec.shape)}: "
            "pass --samples or an --input-spec with fixed sizes"
        )
    return (batch, *spec.shape[1:])


def generate_inputs(specs: list[TensorSpec], count: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic inputs from the spec when the user gives no validation set.

    Floats are uniform in [0, 1) (the range of normalised images); integers in [0, 10).
    """
    rng = np.random.default_rng(seed)
    inputs: dict[str, np.ndarray] = {}
    for spec in specs:
        shape = concrete_shape(spec, count)
        dtype = numpy_dtype(spec.datatype)
        if dtype.kind == "f":
            inputs[spec.name] = rng.random(shape).astype(dtype)
        elif dtype.kind == "b":
            inputs[spec.name] = rng.random(shape) > 0.5
        else:
            inputs[spec.name] = rng.integers(0, 10, shape).astype(dtype)
    return inputs


def check_inputs(specs: list[TensorSpec], inputs: dict[str, np.ndarray]) -> None:
    """Samples must match the spec by name, datatype and fixed dimensions."""
    missing = [s.name for s in specs if s.name not in inputs]
    if missing:
        raise BadInput(f"--samples: no array for input(s) {missing}; the model takes {[s.name for s in specs]}")
    for spec in specs:
        array = inputs[spec.name]
        if array.ndim != len(spec.shape) or any(d not in (-1, a) for d, a in zip(spec.shape, array.shape, strict=True)):
            raise BadInput(
                f"--samples: input {spec.name!r} has shape {list(array.shape)}, the model expects {list(spec.shape)}"
            )
        if array.dtype != numpy_dtype(spec.datatype):
            raise BadInput(f"--samples: input {spec.name!r} is {array.dtype}, the model expects {spec.datatype}")
