"""Tensors as a load test sees them: a model's signature, and the pool of inputs requests draw from.

A run's inputs form a *pool*: one array per input, whose first axis indexes samples. For a
batched model (every input's first dimension is dynamic, ``-1``) a request takes ``batch_size``
random rows of every input; for a model with fixed-size inputs each pool entry is one whole
request. The pool also holds, when known, the answers each sample must get: expected outputs
(checked within a tolerance) or digit labels (the demo MLP's strongest check).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from gateway.core.codec.datatypes import V2_TO_NUMPY

#: Size given to a dynamic dimension other than the batch dimension (``--dynamic-size`` overrides).
DEFAULT_DYNAMIC_SIZE = 4
#: Samples in a generated pool: enough distinct requests that caching cannot flatter the server.
GENERATED_POOL = 256


class TensorSpec(BaseModel):
    """One input or output of the model, as its V2 metadata describes it (``-1`` = dynamic)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    datatype: str
    shape: tuple[int, ...]

    @property
    def batched(self) -> bool:
        return len(self.shape) > 0 and self.shape[0] == -1

    def describe(self) -> str:
        return f"{self.name} {self.datatype} {list(self.shape)}"


def numpy_dtype(datatype: str) -> np.dtype[Any]:
    """The numpy dtype of a V2 datatype (BYTES as object arrays of ``bytes``)."""
    return V2_TO_NUMPY[datatype]


def is_batched(inputs: Sequence[TensorSpec]) -> bool:
    """A model batches when every input's first dimension is dynamic."""
    return bool(inputs) and all(spec.batched for spec in inputs)


def concrete_shape(spec: TensorSpec, dynamic_size: int) -> tuple[int, ...]:
    """The shape of one sample: without the batch dimension, other dynamic dimensions set to ``dynamic_size``."""
    dims = spec.shape[1:] if spec.batched else spec.shape
    return tuple(dynamic_size if d < 0 else d for d in dims)


def random_values(datatype: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Values a model of that datatype can take: [0, 1) floats, small integers, booleans, ASCII strings."""
    if datatype == "BYTES":
        flat = np.empty(int(np.prod(shape)), dtype=object)
        flat[:] = [f"sample-{int(v)}".encode("ascii") for v in rng.integers(0, 1_000_000, flat.size)]
        return flat.reshape(shape)
    if datatype == "BOOL":
        return rng.random(shape) < 0.5
    dtype = numpy_dtype(datatype)
    if dtype.kind == "f":
        return rng.random(shape).astype(dtype)
    return rng.integers(0, 10, shape).astype(dtype)


@dataclass(frozen=True)
class Pool:
    """The inputs requests are drawn from, and the answers they must get when known."""

    inputs: dict[str, np.ndarray]
    expected: dict[str, np.ndarray]
    labels: np.ndarray | None = None

    def __len__(self) -> int:
        return len(next(iter(self.inputs.values())))


def generated_pool(inputs: Sequence[TensorSpec], dynamic_size: int, seed: int, size: int = GENERATED_POOL) -> Pool:
    """Random inputs of every datatype and shape the metadata gives (no expected answers)."""
    rng = np.random.default_rng(seed)
    arrays = {s.name: random_values(s.datatype, (size, *concrete_shape(s, dynamic_size)), rng) for s in inputs}
    return Pool(arrays, {})


def save_pool(pool: Pool, path: Path) -> None:
    """One ``.npz`` (no pickles): ``input:NAME``, ``expected:NAME``, ``labels``.

    A BYTES array is stored as ``bytes:KIND:NAME`` (all elements concatenated, uint8) and
    ``lengths:KIND:NAME`` (each element's length, in the tensor's shape).
    """
    arrays: dict[str, Any] = {}
    for kind, group in (("input", pool.inputs), ("expected", pool.expected)):
        for name, array in group.items():
            if array.dtype == object:
                flat = [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in array.reshape(-1)]
                arrays[f"bytes:{kind}:{name}"] = np.frombuffer(b"".join(flat), dtype=np.uint8)
                arrays[f"lengths:{kind}:{name}"] = np.asarray([len(v) for v in flat], np.int64).reshape(array.shape)
            else:
                arrays[f"{kind}:{name}"] = array
    if pool.labels is not None:
        arrays["labels"] = pool.labels
    with path.open("wb") as handle:
        np.savez(handle, **arrays)


def _bytes_array(blob: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    raw = blob.tobytes()
    ends = np.cumsum(lengths.reshape(-1))
    out = np.empty(ends.size, dtype=object)
    out[:] = [raw[int(e - n) : int(e)] for e, n in zip(ends, lengths.reshape(-1), strict=True)]
    return out.reshape(lengths.shape)


def load_pool(path: Path) -> Pool:
    groups: dict[str, dict[str, np.ndarray]] = {"input": {}, "expected": {}}
    with np.load(path, allow_pickle=False) as data:
        for key in data.files:
            parts = key.split(":", 2)
            if len(parts) == 2 and parts[0] in groups:
                groups[parts[0]][parts[1]] = data[key]
            elif parts[0] == "bytes":
                groups[parts[1]][parts[2]] = _bytes_array(data[key], data[f"lengths:{parts[1]}:{parts[2]}"])
        labels = data["labels"] if "labels" in data.files else None
    return Pool(groups["input"], groups["expected"], labels)


@dataclass(frozen=True)
class Request:
    """One request's input tensors, and which pool samples they came from."""

    indices: np.ndarray
    tensors: dict[str, np.ndarray]


class Sampler:
    """Random requests from a pool; seeded so runs are repeatable, one per simulated user."""

    def __init__(self, pool: Pool, batched: bool, batch_size: int, seed: int) -> None:
        self._pool = pool
        self._batched = batched
        self._batch_size = batch_size
        self._rng = np.random.default_rng(seed)
        self._size = len(pool)

    def next(self) -> Request:
        if self._batched:
            index = self._rng.integers(0, self._size, self._batch_size)
            return Request(index, {name: array[index] for name, array in self._pool.inputs.items()})
        one = self._rng.integers(0, self._size, 1)
        return Request(one, {name: array[int(one[0])] for name, array in self._pool.inputs.items()})

    def expected(self, request: Request) -> dict[str, np.ndarray]:
        """The expected outputs of ``request`` (same batch rows), empty when the pool has none."""
        if self._batched:
            return {name: array[request.indices] for name, array in self._pool.expected.items()}
        return {name: array[int(request.indices[0])] for name, array in self._pool.expected.items()}

    def labels(self, request: Request) -> np.ndarray | None:
        labels = self._pool.labels
        return None if labels is None else labels[request.indices]


def specs_from_metadata(tensors: Any) -> list[TensorSpec]:
    """``inputs``/``outputs`` of V2 metadata as specs; raises ValueError naming what is malformed."""
    if not isinstance(tensors, list):
        raise ValueError("metadata has no tensor list")
    specs = []
    for item in tensors:
        if not isinstance(item, Mapping):
            raise ValueError("a metadata tensor is not an object")
        name, datatype, shape = item.get("name"), item.get("datatype"), item.get("shape")
        if not isinstance(name, str) or datatype not in V2_TO_NUMPY:
            raise ValueError(f"metadata tensor {name!r} has datatype {datatype!r}")
        if not isinstance(shape, list) or not all(isinstance(d, int) for d in shape):
            raise ValueError(f"metadata tensor {name!r} has no integer shape")
        specs.append(TensorSpec(name=name, datatype=str(datatype), shape=tuple(shape)))
    return specs
