"""V2 REST wire format <-> core types: JSON tensors and the binary tensor data extension.

The binary extension (as published with Triton's protocol extensions): a request body is
a JSON header of ``Inference-Header-Content-Length`` bytes followed by the raw tensors
in input order; an input carries ``"parameters": {"binary_data_size": N}`` instead of
``data``. Outputs are returned raw when the output asks ``"binary_data": true`` or the
request asks ``"binary_data_output": true``. Raw data is little-endian row-major; a
BYTES element is a 4-byte little-endian length followed by its bytes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson

from gateway.core.datatypes import deserialize_bytes_tensor, numpy_dtype, serialize_bytes_tensor
from gateway.core.errors import InvalidInput
from gateway.core.types import InferRequest, InferResponse, RequestedOutput, Tensor, TensorSpec

HEADER_LENGTH = "inference-header-content-length"


def parse_json(body: bytes | memoryview, what: str = "request body") -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"malformed JSON in {what}: {exc}") from None


def decode_request(body: bytes, header_length: int | None, model: str, version: str | None) -> InferRequest:
    """Decode a V2 infer request (JSON, or JSON header + binary tensors)."""
    if header_length is None:
        header_end = len(body)
    elif header_length < 0 or header_length > len(body):
        raise InvalidInput(f"Inference-Header-Content-Length is {header_length} but the body has {len(body)} bytes")
    else:
        header_end = header_length
    view = memoryview(body)
    doc = parse_json(view[:header_end])
    if not isinstance(doc, dict):
        raise InvalidInput("request body must be a JSON object")
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidInput("'inputs' must be a non-empty list of tensors")
    offset = header_end
    inputs = []
    for i, item in enumerate(raw_inputs):
        tensor, offset = _decode_input(item, i, view, offset)
        inputs.append(tensor)
    if offset != len(body):
        raise InvalidInput(
            f"body has {len(body) - offset} bytes after the last binary input (check binary_data_size values)"
        )
    return InferRequest(
        model_name=model,
        model_version=version,
        inputs=inputs,
        id=_optional_str(doc.get("id"), "id"),
        outputs=_decode_outputs(doc.get("outputs")),
        parameters=_parameters(doc.get("parameters"), "parameters"),
    )


def decode_raw_single_input(body: bytes, spec: TensorSpec, model: str, version: str | None) -> InferRequest:
    """``Inference-Header-Content-Length: 0``: the whole body is the one input's raw data."""
    dtype = numpy_dtype(spec.datatype)
    if spec.datatype == "BYTES":
        raise InvalidInput("a header-less binary body cannot carry a BYTES input; send a JSON header")
    fixed = math.prod(d for d in spec.shape if d != -1)
    dynamic = [i for i, d in enumerate(spec.shape) if d == -1]
    count, rest = divmod(len(body), dtype.itemsize)
    if rest or len(dynamic) > 1 or (fixed and count % fixed):
        raise InvalidInput(
            f"a {len(body)}-byte body does not fit input {spec.name!r} of shape {list(spec.shape)} {spec.datatype}"
        )
    shape = tuple(count // fixed if d == -1 else d for d in spec.shape) if fixed else (count,)
    data = np.frombuffer(body, dtype=dtype).reshape(shape)
    return InferRequest(model, [Tensor(spec.name, spec.datatype, data)], model_version=version)


def _decode_input(item: Any, index: int, view: memoryview, offset: int) -> tuple[Tensor, int]:
    if not isinstance(item, dict):
        raise InvalidInput(f"inputs[{index}] must be an object")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"inputs[{index}].name must be a non-empty string")
    datatype = item.get("datatype")
    if not isinstance(datatype, str):
        raise InvalidInput(f"input {name!r}: datatype must be a string")
    dtype = numpy_dtype(datatype)
    shape = _shape(item.get("shape"), name)
    count = math.prod(shape)
    params = _parameters(item.get("parameters"), f"input {name!r} parameters")
    size = params.pop("binary_data_size", None)
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidInput(f"input {name!r}: binary_data_size must be a non-negative integer")
        if offset + size > len(view):
            raise InvalidInput(
                f"input {name!r}: binary_data_size {size} runs past the end of the body ({len(view) - offset} left)"
            )
        data = _from_binary(view[offset : offset + size], datatype, dtype, count, name)
        return Tensor(name, datatype, data.reshape(shape), params), offset + size
    if "data" not in item:
        raise InvalidInput(f"input {name!r}: needs 'data' or parameters.binary_data_size")
    data = _from_json(item["data"], datatype, dtype, count, name)
    return Tensor(name, datatype, data.reshape(shape), params), offset


def _shape(value: Any, name: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in value):
        raise InvalidInput(f"input {name!r}: shape must be a list of integers")
    if any(d < 0 for d in value):
        raise InvalidInput(f"input {name!r}: shape {value} has a negative dimension")
    return tuple(value)


def _from_binary(chunk: memoryview, datatype: str, dtype: np.dtype[Any], count: int, name: str) -> np.ndarray:
    if datatype == "BYTES":
        return deserialize_bytes_tensor(chunk, count, name)
    if len(chunk) != count * dtype.itemsize:
        raise InvalidInput(
            f"input {name!r}: binary_data_size is {len(chunk)} bytes, "
            f"shape needs {count} x {dtype.itemsize} = {count * dtype.itemsize}"
        )
    return np.frombuffer(chunk, dtype=dtype)


def _from_json(data: Any, datatype: str, dtype: np.dtype[Any], count: int, name: str) -> np.ndarray:
    if not isinstance(data, list):
        data = [data]
    if datatype == "BYTES":
        flat = _flatten_bytes(data, name)
        array = np.empty(len(flat), dtype=object)
        array[:] = flat
    else:
        try:
            array = np.asarray(data, dtype=dtype).reshape(-1)
        except (ValueError, TypeError, OverflowError) as exc:
            raise InvalidInput(f"input {name!r}: data is not valid {datatype}: {exc}") from None
        if datatype == "BOOL" and not _all_bools(data):
            raise InvalidInput(f"input {name!r}: BOOL data must be true/false values")
    if array.size != count:
        raise InvalidInput(f"input {name!r}: shape needs {count} elements, data has {array.size}")
    return array


def _all_bools(data: list[Any]) -> bool:
    return all(_all_bools(v) if isinstance(v, list) else isinstance(v, bool) for v in data)


def _flatten_bytes(data: list[Any], name: str) -> list[bytes]:
    out: list[bytes] = []
    for value in data:
        if isinstance(value, list):
            out.extend(_flatten_bytes(value, name))
        elif isinstance(value, str):
            out.append(value.encode("utf-8"))
        else:
            raise InvalidInput(f"input {name!r}: BYTES data must be strings, got {type(value).__name__}")
    return out


def _decode_outputs(value: Any) -> list[RequestedOutput] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise InvalidInput("'outputs' must be a list")
    outputs = []
    for i, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InvalidInput(f"outputs[{i}] must be an object with a string 'name'")
        outputs.append(RequestedOutput(item["name"], _parameters(item.get("parameters"), f"outputs[{i}].parameters")))
    return outputs


def _parameters(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(f"{where} must be an object")
    return dict(value)


def _optional_str(value: Any, where: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise InvalidInput(f"'{where}' must be a string")


# -- responses -------------------------------------------------------------------------


def encode_response(response: InferResponse, request: InferRequest) -> tuple[bytes, int | None]:
    """The response body, and the JSON header length when any output is binary."""
    binary_default = bool(request.parameters.get("binary_data_output", False))
    wants = {o.name: o.parameters for o in request.outputs or ()}
    header_outputs = []
    chunks: list[bytes] = []
    for tensor in response.outputs:
        binary = bool(wants.get(tensor.name, {}).get("binary_data", binary_default))
        entry: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.data.shape)}
        if binary:
            raw = _to_binary(tensor)
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = _to_json_data(tensor)
        header_outputs.append(entry)
    doc: dict[str, Any] = {"model_name": response.model_name, "model_version": response.model_version}
    if response.id is not None:
        doc["id"] = response.id
    if response.parameters:
        doc["parameters"] = response.parameters
    doc["outputs"] = header_outputs
    header = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return header, None
    return b"".join([header, *chunks]), len(header)


def _to_binary(tensor: Tensor) -> bytes:
    if tensor.datatype == "BYTES":
        return serialize_bytes_tensor(tensor.data)
    return np.ascontiguousarray(tensor.data, dtype=tensor.data.dtype.newbyteorder("<")).tobytes()


def _to_json_data(tensor: Tensor) -> Any:
    flat = tensor.data.reshape(-1)
    if tensor.datatype == "BYTES":
        try:
            return [bytes(v).decode("utf-8") for v in flat]
        except UnicodeDecodeError:
            raise InvalidInput(
                f"output {tensor.name!r} holds non-UTF-8 bytes; request it with parameters.binary_data=true"
            ) from None
    if tensor.datatype == "FP16":
        return flat.astype(np.float32)
    return np.ascontiguousarray(flat)
