"""Shape rules and size limits, checked on the *declared* shape before a tensor is allocated.

Every decoder calls :func:`check_shape` (any tensor) or :meth:`InputRules.check` (a request
input, which also checks the model's signature) with the shape the client declared, and only
then builds an array. A 47-byte message declaring a [2**22, 64] tensor is refused here, not
after a gigabyte has been allocated.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

from gateway.core.codec.datatypes import DATATYPES, element_size
from gateway.core.errors import InvalidInput
from gateway.core.types import TensorSpec

MiB: Final = 1024 * 1024
_SHAPE_TYPES: Final = (list, tuple)
_INT_ONLY: Final = frozenset({int})


@dataclass(frozen=True, slots=True)
class TensorLimits:
    """Gateway-wide bounds on one decoded tensor (settings ``max_tensor_bytes``)."""

    max_bytes: int = 64 * MiB

    @property
    def max_elements(self) -> int:
        """One element costs at least one byte (BOOL, INT8, UINT8)."""
        return self.max_bytes


DEFAULT_LIMITS: Final = TensorLimits()


def check_dims(name: str, shape: Any, where: str = "shape") -> tuple[int, ...]:
    """``shape`` as a tuple of non-negative ints, or an error naming the input and the rule."""
    if isinstance(shape, _SHAPE_TYPES):  # the common case in one short loop; any doubt, the checks below
        for dim in shape:
            if type(dim) is not int or dim < 0:
                break
        else:
            return tuple(shape)
    if not isinstance(shape, _SHAPE_TYPES) or not set(map(type, shape)) <= _INT_ONLY:
        raise InvalidInput(f"input {name!r}: {where} must be a list of integers")
    if shape and min(shape) < 0:
        raise InvalidInput(f"input {name!r}: {where} {list(shape)} has a negative dimension")
    return tuple(shape)


def check_shape(name: str, datatype: str, shape: Sequence[int], limits: TensorLimits = DEFAULT_LIMITS) -> int:
    """The element count of a tensor of ``shape`` (dims already non-negative), within ``limits``."""
    count = math.prod(shape)
    size = count * element_size(datatype)
    if size <= limits.max_bytes:  # every element costs at least a byte: the count is within max_elements too
        return count
    if count > limits.max_elements:
        raise InvalidInput(
            f"input {name!r}: shape {list(shape)} has {count} elements, over the limit of {limits.max_elements}"
        )
    raise InvalidInput(
        f"input {name!r}: shape {list(shape)} of {datatype} needs {size} bytes, "
        f"over the limit of {limits.max_bytes} bytes (max_tensor_bytes)"
    )


class TensorHeader(NamedTuple):
    """A request input whose declared name, datatype and shape passed every rule: safe to allocate."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    elements: int


@dataclass(frozen=True, slots=True)
class InputRules:
    """What a resolved model version accepts: its input specs, max batch and the gateway's limits."""

    specs: Mapping[str, TensorSpec]
    max_batch_size: int = 0
    limits: TensorLimits = DEFAULT_LIMITS

    @classmethod
    def for_inputs(cls, inputs: Sequence[TensorSpec], max_batch_size: int, limits: TensorLimits) -> InputRules:
        return cls({spec.name: spec for spec in inputs}, max_batch_size, limits)

    def spec(self, name: Any) -> TensorSpec:
        """The model's input called ``name``, or an error listing the inputs it has."""
        if not isinstance(name, str) or not name:
            raise InvalidInput("an input has no name (a non-empty string is required)")
        spec = self.specs.get(name)
        if spec is None:
            raise InvalidInput(f"unknown input {name!r}; the model's inputs are {sorted(self.specs)}")
        return spec

    def check(self, name: Any, datatype: Any, shape: Any) -> TensorHeader:
        """Name known, datatype and shape those of the model, batch and size within bounds."""
        spec = self.spec(name)
        if datatype != spec.datatype or datatype not in DATATYPES:  # equal to the spec's: a string
            raise _datatype_error(name, datatype, spec.datatype)
        dims = check_dims(name, shape)
        self.check_against_spec(spec, dims)
        return TensorHeader(name, datatype, dims, check_shape(name, datatype, dims, self.limits))

    def check_against_spec(self, spec: TensorSpec, dims: tuple[int, ...]) -> None:
        """Rank, fixed dimensions and batch size of ``dims`` against the model's ``spec``."""
        wanted = spec.shape
        if len(dims) != len(wanted):
            raise InvalidInput(f"input {spec.name!r}: shape {list(dims)} does not match the model's {list(wanted)}")
        for want, got in zip(wanted, dims):  # noqa: B905 - same length, checked above
            if want != got and want != -1:
                raise InvalidInput(f"input {spec.name!r}: shape {list(dims)} does not match the model's {list(wanted)}")
        batch = self.max_batch_size
        if batch and spec.shape and spec.shape[0] == -1 and dims[0] > batch:
            raise InvalidInput(f"input {spec.name!r}: batch size {dims[0]} is over max_batch_size {batch}")


def _datatype_error(name: str, datatype: Any, expected: str) -> InvalidInput:
    if not isinstance(datatype, str) or datatype not in DATATYPES:
        return InvalidInput(
            f"input {name!r}: unknown datatype {datatype!r}; expected one of {', '.join(sorted(DATATYPES))}"
        )
    return InvalidInput(f"input {name!r}: datatype {datatype} does not match the model's {expected}")
