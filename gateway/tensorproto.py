"""TF Serving's ``tensorflow.TensorProto`` <-> core tensors, shared by the TF Serving front end and the
``tfserving`` backend (neither imports the other).

Tensors are decoded from ``tensor_content`` (raw little-endian bytes) or from the typed
``*_val`` fields, and encoded into the typed fields, which is what TF Serving sends by
default and what clients reading ``outputs[...].float_val`` expect.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

import numpy as np

from gateway.core.codec.limits import DEFAULT_LIMITS, InputRules, TensorLimits, check_dims, check_shape
from gateway.core.codec.raw import array_from_raw, array_to_raw, as_bytes
from gateway.core.codec.values import array_from_field
from gateway.core.errors import InvalidInput
from gateway.core.types import Tensor
from gateway.protos.tfserving.tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

#: The signature TF Serving uses when a request names none; the only one a gateway model has.
DEFAULT_SIGNATURE: Final = "serving_default"
#: TF Serving's convention: a DT_STRING output whose name ends like this holds binary data.
BINARY_SUFFIX: Final = "_bytes"

#: V2 datatype -> TensorFlow DataType.
TF_DTYPE: Final[Mapping[str, types_pb2.DataType]] = {
    "BOOL": types_pb2.DT_BOOL,
    "UINT8": types_pb2.DT_UINT8,
    "UINT16": types_pb2.DT_UINT16,
    "UINT32": types_pb2.DT_UINT32,
    "UINT64": types_pb2.DT_UINT64,
    "INT8": types_pb2.DT_INT8,
    "INT16": types_pb2.DT_INT16,
    "INT32": types_pb2.DT_INT32,
    "INT64": types_pb2.DT_INT64,
    "FP16": types_pb2.DT_HALF,
    "FP32": types_pb2.DT_FLOAT,
    "FP64": types_pb2.DT_DOUBLE,
    "BYTES": types_pb2.DT_STRING,
}
V2_DATATYPE: Final[Mapping[int, str]] = {dtype: name for name, dtype in TF_DTYPE.items()}

#: Each typed field's own element type (narrower datatypes are range-checked when read).
_FIELD_DTYPE: Final[Mapping[str, np.dtype[Any]]] = {
    "bool_val": np.dtype(np.bool_),
    "int_val": np.dtype(np.int32),
    "int64_val": np.dtype(np.int64),
    "uint32_val": np.dtype(np.uint32),
    "uint64_val": np.dtype(np.uint64),
    "float_val": np.dtype(np.float32),
    "double_val": np.dtype(np.float64),
}

#: V2 datatype -> the TensorProto field TensorFlow stores it in (FP16 as bit patterns in half_val).
VALUE_FIELD: Final[Mapping[str, str]] = {
    "BOOL": "bool_val",
    "UINT8": "int_val",
    "UINT16": "int_val",
    "UINT32": "uint32_val",
    "UINT64": "uint64_val",
    "INT8": "int_val",
    "INT16": "int_val",
    "INT32": "int_val",
    "INT64": "int64_val",
    "FP16": "half_val",
    "FP32": "float_val",
    "FP64": "double_val",
    "BYTES": "string_val",
}


def tf_dtype_name(dtype: int) -> str:
    """``DT_FLOAT`` for 1; the number itself for a value this proto version does not know."""
    try:
        return types_pb2.DataType.Name(dtype)
    except ValueError:
        return str(dtype)


# -- gRPC: TensorProto <-> numpy ---------------------------------------------------------


def shape_proto(shape: Iterable[int]) -> tensor_shape_pb2.TensorShapeProto:
    """A TensorShapeProto; -1 marks a dynamic dimension, as in TF signatures."""
    return tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in shape])


def tensor_from_proto(
    name: str, proto: tensor_pb2.TensorProto, rules: InputRules | None = None, limits: TensorLimits = DEFAULT_LIMITS
) -> Tensor:
    """Decode one tensor; every problem is an :class:`InvalidInput` naming the input and the rule.

    With ``rules`` (a request for a resolved model), the name, datatype and declared shape are
    checked against the model before anything is allocated; otherwise only ``limits`` apply.
    """
    datatype = V2_DATATYPE.get(proto.dtype)
    if datatype is None:
        supported = ", ".join(sorted(tf_dtype_name(d) for d in V2_DATATYPE))
        raise InvalidInput(f"input {name!r}: dtype {tf_dtype_name(proto.dtype)} is not supported ({supported})")
    if proto.tensor_shape.unknown_rank:
        raise InvalidInput(f"input {name!r}: tensor_shape has unknown_rank; send the concrete shape")
    dims = check_dims(name, [int(d.size) for d in proto.tensor_shape.dim], "tensor_shape")
    if rules is not None:
        count = rules.check(name, datatype, list(dims)).elements
    else:
        count = check_shape(name, datatype, dims, limits)
    return Tensor(name, datatype, _values(name, proto, datatype, dims, count).reshape(dims))


def _values(name: str, proto: tensor_pb2.TensorProto, datatype: str, dims: tuple[int, ...], count: int) -> np.ndarray:
    """The flat data: ``tensor_content`` bytes, or the typed field (one value may fill the shape)."""
    if datatype == "BYTES":
        return array_from_field(name, datatype, proto.string_val, None, count, "string_val", fill=True)
    if proto.tensor_content:
        return array_from_raw(name, datatype, (count,), count, proto.tensor_content, "tensor_content")
    field = VALUE_FIELD[datatype]
    values = getattr(proto, field)
    if datatype == "FP16":  # half_val carries the FP16 bit patterns as integers
        bits = array_from_field(name, "UINT16", values, np.dtype(np.int32), count, field, fill=True)
        return bits.view("<f2")
    return array_from_field(name, datatype, values, _FIELD_DTYPE[field], count, field, fill=True)


def tensor_to_content_proto(array: np.ndarray, datatype: str) -> tensor_pb2.TensorProto:
    """A request TensorProto with raw little-endian bytes in ``tensor_content`` (BYTES in ``string_val``).

    What the ``tfserving`` backend sends: one memory copy instead of one protobuf field per
    element; TF Serving accepts both forms.
    """
    proto = tensor_pb2.TensorProto(dtype=TF_DTYPE[datatype], tensor_shape=shape_proto(array.shape))
    if datatype == "BYTES":
        proto.string_val.extend(as_bytes(item) for item in array.reshape(-1))
    else:
        proto.tensor_content = array_to_raw(array, datatype)
    return proto


def tensor_to_proto(tensor: Tensor) -> tensor_pb2.TensorProto:
    """Encode one response tensor into the typed ``*_val`` field, as TF Serving does by default."""
    proto = tensor_pb2.TensorProto(dtype=TF_DTYPE[tensor.datatype], tensor_shape=shape_proto(tensor.shape))
    flat = tensor.data.reshape(-1)
    field = getattr(proto, VALUE_FIELD[tensor.datatype])
    if tensor.datatype == "BYTES":
        field.extend(as_bytes(v) for v in flat)
    elif tensor.datatype == "FP16":
        field.extend(flat.astype("<f2").view("<u2").tolist())
    else:
        field.extend(flat.tolist())
    return proto
