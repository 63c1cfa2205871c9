"""The frame format between the gateway and a backend worker process.

One frame is ``<u32 length><u32 header length><JSON header><tensor bytes...>``, all
little-endian. The JSON header carries the message (``op``, request ``id``, error kind
and message, a signature) and describes each tensor (name, V2 datatype, shape, byte
count); the tensors' raw bytes follow in that order, so numeric data is never turned
into JSON. BYTES tensors use the V2 binary encoding (4-byte length per element).

Only numpy and the core's datatype/error modules are imported here: both sides of the
pipe use this module, and the gateway side must stay free of frameworks.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np

from gateway.core.codec.datatypes import v2_datatype
from gateway.core.codec.limits import TensorLimits, check_dims, check_shape
from gateway.core.codec.raw import array_from_raw, array_to_raw
from gateway.core.errors import (
    BackendError,
    BackendUnavailable,
    DeadlineExceeded,
    ErrorKind,
    GatewayError,
    InvalidInput,
    ModelNotFound,
    Overloaded,
    PayloadTooLarge,
    Unsupported,
)
from gateway.core.types import Signature, TensorSpec

_U32 = struct.Struct("<I")
#: Size of the length prefix in front of every frame.
PREFIX_SIZE = _U32.size
#: Sent as ``kind`` when the worker cannot load its model: a load failure, not a request error.
CONFIG_KIND = "CONFIG"
#: Frames between the gateway and its own worker carry already-validated tensors and their results.
_FRAME_LIMITS = TensorLimits(max_bytes=2**40)

_ERROR_CLASSES: dict[str, type[GatewayError]] = {
    ErrorKind.INVALID_ARGUMENT.value: InvalidInput,
    ErrorKind.NOT_FOUND.value: ModelNotFound,
    ErrorKind.UNAVAILABLE.value: BackendUnavailable,
    ErrorKind.RESOURCE_EXHAUSTED.value: Overloaded,
    ErrorKind.DEADLINE_EXCEEDED.value: DeadlineExceeded,
    ErrorKind.PAYLOAD_TOO_LARGE.value: PayloadTooLarge,
    ErrorKind.UNIMPLEMENTED.value: Unsupported,
    ErrorKind.INTERNAL.value: BackendError,
}


def encode_frame(header: Mapping[str, Any], tensors: Mapping[str, np.ndarray] | None = None) -> bytes:
    """A complete frame, length prefix included."""
    described = []
    buffers = []
    for name, array in (tensors or {}).items():
        datatype = v2_datatype(array.dtype)
        raw = array_to_raw(array, datatype)
        described.append({"name": name, "datatype": datatype, "shape": list(array.shape), "nbytes": len(raw)})
        buffers.append(raw)
    head = json.dumps({**header, "tensors": described}, separators=(",", ":")).encode()
    body = b"".join([_U32.pack(len(head)), head, *buffers])
    return _U32.pack(len(body)) + body


def frame_length(prefix: bytes) -> int:
    """The body length announced by a frame's 4-byte prefix."""
    return int(_U32.unpack(prefix)[0])


def decode_body(body: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Split a frame body (without the length prefix) into its header and tensors."""
    (head_len,) = _U32.unpack_from(body, 0)
    offset = PREFIX_SIZE + head_len
    header: dict[str, Any] = json.loads(body[PREFIX_SIZE:offset])
    view = memoryview(body)
    tensors: dict[str, np.ndarray] = {}
    for described in header.pop("tensors", []):
        end = offset + int(described["nbytes"])
        tensors[described["name"]] = _array(described, view[offset:end])
        offset = end
    return header, tensors


def _array(described: Mapping[str, Any], raw: memoryview) -> np.ndarray:
    name, datatype = str(described["name"]), str(described["datatype"])
    shape = check_dims(name, [int(d) for d in described["shape"]])
    count = check_shape(name, datatype, shape, _FRAME_LIMITS)
    array = array_from_raw(name, datatype, shape, count, raw, "frame")
    # copy: the frame buffer is released as soon as decoding returns
    return array if datatype == "BYTES" else array.copy()


def error_header(request_id: int, exc: BaseException) -> dict[str, Any]:
    """How a worker reports a failure: the error kind (if the runtime chose one) and a message."""
    if isinstance(exc, GatewayError):
        return {"id": request_id, "op": "error", "kind": exc.kind.value, "message": exc.message}
    text = str(exc).strip()
    message = text.splitlines()[0] if text else type(exc).__name__
    return {"id": request_id, "op": "error", "kind": ErrorKind.INTERNAL.value, "message": message}


def error_from_header(header: Mapping[str, Any]) -> GatewayError:
    """The core error class a worker's error frame stands for (unknown kinds become BackendError)."""
    cls = _ERROR_CLASSES.get(str(header.get("kind")), BackendError)
    return cls(str(header.get("message", "the backend worker failed")))


def signature_to_json(signature: Signature) -> dict[str, Any]:
    return {
        "inputs": [spec.to_dict() for spec in signature.inputs],
        "outputs": [spec.to_dict() for spec in signature.outputs],
    }


def signature_from_json(raw: Mapping[str, Any]) -> Signature:
    def specs(items: list[dict[str, Any]]) -> list[TensorSpec]:
        return [TensorSpec(t["name"], t["datatype"], tuple(int(d) for d in t["shape"])) for t in items]

    return Signature(inputs=specs(raw["inputs"]), outputs=specs(raw["outputs"]))
