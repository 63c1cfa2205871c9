"""The wire format between the gateway and the shipped TorchServe handler: tensors as raw bytes.

JSON would turn FP32 into decimal text and lose dtype (every number becomes a float64 or
an int) and, for an empty or ragged tensor, shape. This frame keeps both exactly::

    b"MGT1" | uint32 little-endian header length | JSON header | raw C-order buffers

The header is a list of ``{"dtype": numpy dtype string, "shape": [...]}`` in tensor order.
Tensors are positional: the gateway sends inputs in the signature's order and reads
outputs back in the declared order.

This module depends on numpy only and imports nothing from the gateway: it is packaged
next to the handler inside every .mar, so a TorchServe running in another environment
can use it.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence

import numpy as np

MAGIC = b"MGT1"
CONTENT_TYPE = "application/x-modelgate-tensors"
_LENGTH = struct.Struct("<I")
#: Numeric and boolean tensors only: TorchScript has no string tensors.
_KINDS = frozenset("biuf")


class CodecError(ValueError):
    """A frame is malformed; the message says which part."""


def encode(arrays: Sequence[np.ndarray]) -> bytes:
    """One frame holding ``arrays`` in order, dtype and shape included."""
    header = []
    for index, array in enumerate(arrays):
        if array.dtype.kind not in _KINDS:
            raise CodecError(f"tensor {index}: dtype {array.dtype} cannot be sent (numeric or bool only)")
        header.append({"dtype": array.dtype.str, "shape": list(array.shape)})
    head = json.dumps(header, separators=(",", ":")).encode()
    parts = [MAGIC, _LENGTH.pack(len(head)), head]
    parts.extend(np.ascontiguousarray(a).tobytes() for a in arrays)
    return b"".join(parts)


def decode(payload: bytes | bytearray | memoryview) -> list[np.ndarray]:
    """The tensors of one frame; raises :class:`CodecError` naming what is wrong."""
    view = memoryview(payload)
    prefix = len(MAGIC) + _LENGTH.size
    if len(view) < prefix or bytes(view[: len(MAGIC)]) != MAGIC:
        raise CodecError("payload is not a modelgate tensor frame (bad magic)")
    (head_len,) = _LENGTH.unpack(view[len(MAGIC) : prefix])
    if prefix + head_len > len(view):
        raise CodecError(f"header length {head_len} runs past the end of the payload ({len(view)} bytes)")
    header = _parse_header(bytes(view[prefix : prefix + head_len]))
    offset = prefix + head_len
    arrays = []
    for index, (dtype, shape) in enumerate(header):
        nbytes = dtype.itemsize * int(np.prod(shape, dtype=np.int64))
        if offset + nbytes > len(view):
            raise CodecError(f"tensor {index}: needs {nbytes} bytes, only {len(view) - offset} left")
        arrays.append(np.frombuffer(view[offset : offset + nbytes], dtype=dtype).reshape(shape))
        offset += nbytes
    if offset != len(view):
        raise CodecError(f"{len(view) - offset} trailing bytes after the last tensor")
    return arrays


def _parse_header(raw: bytes) -> list[tuple[np.dtype[np.generic], tuple[int, ...]]]:
    try:
        items = json.loads(raw)
    except ValueError as exc:
        raise CodecError(f"header is not JSON: {exc}") from None
    if not isinstance(items, list):
        raise CodecError("header must be a list of tensors")
    return [_parse_item(index, item) for index, item in enumerate(items)]


def _parse_item(index: int, item: object) -> tuple[np.dtype[np.generic], tuple[int, ...]]:
    if not isinstance(item, dict) or not isinstance(item.get("dtype"), str) or not isinstance(item.get("shape"), list):
        raise CodecError(f"tensor {index}: header entry needs 'dtype' (string) and 'shape' (list)")
    try:
        dtype = np.dtype(item["dtype"])
    except TypeError:
        raise CodecError(f"tensor {index}: unknown dtype {item['dtype']!r}") from None
    if dtype.kind not in _KINDS:
        raise CodecError(f"tensor {index}: dtype {dtype} is not numeric or bool")
    shape = item["shape"]
    if not all(isinstance(d, int) and d >= 0 for d in shape):
        raise CodecError(f"tensor {index}: shape {shape} must be non-negative integers")
    return dtype, tuple(shape)
