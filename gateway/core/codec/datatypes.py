"""Open Inference Protocol (V2) datatypes and their numpy equivalents.

BYTES tensors are numpy object arrays whose elements are ``bytes``. Everything on the
wire is little-endian, row-major.
"""

from __future__ import annotations

import numpy as np

from gateway.core.errors import InvalidInput

#: V2 datatype name -> numpy dtype (little-endian). BYTES maps to object.
V2_TO_NUMPY: dict[str, np.dtype[np.generic]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}

_KIND_SIZE_TO_V2 = {(dt.kind, dt.itemsize): name for name, dt in V2_TO_NUMPY.items() if name != "BYTES"}

DATATYPES: frozenset[str] = frozenset(V2_TO_NUMPY)

#: Bytes a BYTES element costs at least on any wire (its 4-byte length prefix); used for size limits.
BYTES_ELEMENT_SIZE = 4


def numpy_dtype(datatype: str) -> np.dtype[np.generic]:
    """The numpy dtype for a V2 datatype, or a clear error naming the bad value."""
    try:
        return V2_TO_NUMPY[datatype]
    except KeyError:
        raise InvalidInput(f"unknown datatype {datatype!r}; expected one of {', '.join(sorted(DATATYPES))}") from None


def v2_datatype(dtype: np.dtype[np.generic]) -> str:
    """The V2 datatype for a numpy dtype (strings and bytes map to BYTES)."""
    if dtype.kind in ("O", "S", "U"):
        return "BYTES"
    try:
        return _KIND_SIZE_TO_V2[(dtype.kind, dtype.itemsize)]
    except KeyError:
        raise InvalidInput(f"numpy dtype {dtype} has no V2 datatype") from None


def element_size(datatype: str) -> int:
    """Bytes per element on the wire (BYTES: the minimum, its length prefix)."""
    if datatype == "BYTES":
        return BYTES_ELEMENT_SIZE
    return V2_TO_NUMPY[datatype].itemsize
