"""Check a decoded request against the model's signature before it reaches a backend."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gateway.core.errors import InvalidInput
from gateway.core.types import RequestedOutput, Signature, Tensor, TensorSpec


def validate_inputs(inputs: Sequence[Tensor], signature: Signature, max_batch_size: int) -> dict[str, np.ndarray]:
    """Names, datatypes, ranks, fixed dimensions and batch size; returns arrays by name."""
    specs = {spec.name: spec for spec in signature.inputs}
    arrays: dict[str, np.ndarray] = {}
    for tensor in inputs:
        spec = specs.get(tensor.name)
        if spec is None:
            raise InvalidInput(f"unknown input {tensor.name!r}; the model's inputs are {sorted(specs)}")
        if tensor.name in arrays:
            raise InvalidInput(f"input {tensor.name!r} is given more than once")
        _check_tensor(tensor, spec, max_batch_size)
        arrays[tensor.name] = tensor.data
    missing = sorted(set(specs) - set(arrays))
    if missing:
        raise InvalidInput(f"missing inputs {missing}; the model needs {sorted(specs)}")
    return arrays


def _check_tensor(tensor: Tensor, spec: TensorSpec, max_batch_size: int) -> None:
    if tensor.datatype != spec.datatype:
        raise InvalidInput(
            f"input {tensor.name!r}: datatype {tensor.datatype} does not match the model's {spec.datatype}"
        )
    shape = tensor.shape
    if len(shape) != len(spec.shape) or any(
        want not in (-1, got) for want, got in zip(spec.shape, shape, strict=False)
    ):
        raise InvalidInput(f"input {tensor.name!r}: shape {list(shape)} does not match the model's {list(spec.shape)}")
    if max_batch_size and spec.shape and spec.shape[0] == -1 and shape[0] > max_batch_size:
        raise InvalidInput(f"input {tensor.name!r}: batch size {shape[0]} is over max_batch_size {max_batch_size}")


def select_outputs(requested: Sequence[RequestedOutput] | None, signature: Signature) -> list[TensorSpec]:
    """The outputs to return: those requested (in request order), else all of the model's."""
    if not requested:
        return list(signature.outputs)
    specs = {spec.name: spec for spec in signature.outputs}
    chosen = []
    for output in requested:
        spec = specs.get(output.name)
        if spec is None:
            raise InvalidInput(f"unknown output {output.name!r}; the model's outputs are {sorted(specs)}")
        chosen.append(spec)
    return chosen
