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
    """Bytes per element for fixed-size datatypes (BYTES has none)."""
    if datatype == "BYTES":
        raise ValueError("BYTES has no fixed element size")
    return V2_TO_NUMPY[datatype].itemsize


def serialize_bytes_tensor(array: np.ndarray) -> bytes:
    """Encode a BYTES tensor as the V2 binary format: 4-byte LE length + bytes, per element."""
    parts: list[bytes] = []
    for item in array.reshape(-1):
        raw = item.encode("utf-8") if isinstance(item, str) else bytes(item)
        parts.append(len(raw).to_bytes(4, "little"))
        parts.append(raw)
    return b"".join(parts)


def deserialize_bytes_tensor(buffer: bytes | memoryview, count: int, name: str) -> np.ndarray:
    """Decode ``count`` length-prefixed BYTES elements; raise naming the tensor on a bad buffer."""
    view = memoryview(buffer)
    out = np.empty(count, dtype=object)
    offset = 0
    for i in range(count):
        if offset + 4 > len(view):
            raise InvalidInput(f"input {name!r}: BYTES data ends inside element {i}'s length prefix")
        length = int.from_bytes(view[offset : offset + 4], "little")
        offset += 4
        if offset + length > len(view):
            raise InvalidInput(f"input {name!r}: BYTES element {i} says {length} bytes, fewer remain")
        out[i] = bytes(view[offset : offset + length])
        offset += length
    if offset != len(view):
        raise InvalidInput(f"input {name!r}: {len(view) - offset} bytes left after {count} BYTES elements")
    return out
