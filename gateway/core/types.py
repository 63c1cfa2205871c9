"""Protocol-neutral request and response types.

Adapters decode their wire format into these, the data plane works only on these, and
adapters encode the response back. Tensors are plain numpy arrays; BYTES tensors are
object arrays of ``bytes``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(slots=True)
class TensorSpec:
    """Name, V2 datatype and shape (-1 for a dynamic dimension) of a model input or output."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(slots=True)
class Signature:
    """The inputs and outputs a loaded model version accepts and produces."""

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]


@dataclass(slots=True)
class Tensor:
    """A named tensor with its V2 datatype; ``data.shape`` is the tensor's shape."""

    name: str
    datatype: str
    data: np.ndarray
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.data.shape)


@dataclass(slots=True)
class RequestedOutput:
    """An output the client asked for, with its per-output parameters (e.g. binary_data)."""

    name: str
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class InferRequest:
    """One inference request. ``model_version`` is a version number string, or None for the default."""

    model_name: str
    inputs: list[Tensor]
    model_version: str | None = None
    id: str | None = None
    outputs: list[RequestedOutput] | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class InferResponse:
    """The result: the outputs in the order requested (or the model's order)."""

    model_name: str
    model_version: str
    outputs: list[Tensor]
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
