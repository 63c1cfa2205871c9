"""Raw little-endian buffers <-> arrays, and the V2 BYTES framing (4-byte LE length + bytes per element).

Sizes are checked against the declared element count before anything is allocated: a
fixed-size tensor's buffer must be exactly ``count * itemsize`` bytes (then ``np.frombuffer``
copies nothing), and a BYTES buffer must hold at least ``4 * count`` bytes of length
prefixes before the element array is made.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gateway.core.codec.datatypes import BYTES_ELEMENT_SIZE, V2_TO_NUMPY, numpy_dtype
from gateway.core.errors import InvalidInput


def array_from_raw(
    name: str, datatype: str, shape: Sequence[int], count: int, buffer: bytes | memoryview, where: str = "raw data"
) -> np.ndarray:
    """One tensor from its raw bytes (zero-copy for fixed-size datatypes); ``count`` is already limit-checked."""
    if datatype == "BYTES":
        return decode_bytes_elements(buffer, count, name, where).reshape(shape)
    dtype = numpy_dtype(datatype)
    expected = count * dtype.itemsize
    if len(buffer) != expected:
        raise InvalidInput(
            f"input {name!r}: {where} has {len(buffer)} bytes; shape {list(shape)} of {datatype} "
            f"needs {expected} ({count} elements x {dtype.itemsize} bytes)"
        )
    array = np.frombuffer(buffer, dtype=dtype).reshape(shape)
    if datatype == "BOOL" and array.size and int(array.view(np.uint8).max()) > 1:
        raise InvalidInput(f"input {name!r}: {where} for BOOL must hold only bytes 0 and 1")
    return array


def array_to_raw(array: np.ndarray, datatype: str) -> bytes:
    """An array as the V2 raw form: little-endian row-major bytes, or length-prefixed BYTES."""
    if datatype == "BYTES":
        return encode_bytes_elements(array)
    return np.ascontiguousarray(array, dtype=V2_TO_NUMPY[datatype]).tobytes()


def encode_bytes_elements(array: np.ndarray) -> bytes:
    """A BYTES tensor in the V2 binary format: 4-byte LE length + bytes, per element."""
    parts: list[bytes] = []
    for item in array.reshape(-1):
        raw = as_bytes(item)
        parts.append(len(raw).to_bytes(4, "little"))
        parts.append(raw)
    return b"".join(parts)


def decode_bytes_elements(buffer: bytes | memoryview, count: int, name: str, where: str = "raw data") -> np.ndarray:
    """``count`` length-prefixed BYTES elements; the buffer must be used exactly."""
    view = memoryview(buffer)
    if count * BYTES_ELEMENT_SIZE > len(view):  # refuse before allocating the element array
        raise InvalidInput(
            f"input {name!r}: {where} has {len(view)} bytes, too few for {count} BYTES elements "
            f"(each needs a {BYTES_ELEMENT_SIZE}-byte length prefix)"
        )
    out = np.empty(count, dtype=object)
    offset = 0
    for i in range(count):
        length = int.from_bytes(view[offset : offset + 4], "little")
        offset += 4
        if offset + length > len(view):
            raise InvalidInput(f"input {name!r}: {where}: BYTES element {i} says {length} bytes, fewer remain")
        out[i] = bytes(view[offset : offset + length])
        offset += length
        if i + 1 < count and offset + 4 > len(view):
            raise InvalidInput(f"input {name!r}: {where} ends inside BYTES element {i + 1}'s length prefix")
    if offset != len(view):
        raise InvalidInput(f"input {name!r}: {where} has {len(view) - offset} bytes left after {count} BYTES elements")
    return out


def as_bytes(item: object) -> bytes:
    """One BYTES element as bytes (text is UTF-8 encoded)."""
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        return item.encode("utf-8")
    raw: bytes = bytes(item)  # type: ignore[call-overload]
    return raw


def object_array(items: Sequence[bytes]) -> np.ndarray:
    """A 1-D object array of the given elements (numpy would otherwise make a fixed-width ``S`` array)."""
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array
