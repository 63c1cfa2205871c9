"""V2 REST wire format <-> core types: JSON tensors and the binary tensor data extension.

The binary extension (as published with Triton's protocol extensions): a request body is
a JSON header of ``Inference-Header-Content-Length`` bytes followed by the raw tensors
in input order; an input carries ``"parameters": {"binary_data_size": N}`` instead of
``data``. Outputs are returned raw when the output asks ``"binary_data": true`` or the
request asks ``"binary_data_output": true``. Tensor rules (datatypes, shapes, limits,
strict JSON values, raw buffers, BYTES framing) are the core codec's: every input's
declared name, datatype and shape pass the resolved model's :class:`InputRules` before
its data is touched.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson

from gateway.core.codec.datatypes import numpy_dtype
from gateway.core.codec.limits import InputRules, TensorHeader, check_dims, check_shape
from gateway.core.codec.raw import array_from_raw, array_to_raw
from gateway.core.codec.values import array_from_json, array_to_json, nested_shape
from gateway.core.errors import InvalidInput
from gateway.core.types import InferRequest, InferResponse, RequestedOutput, Tensor
from gateway.protocols.http import parse_json

HEADER_LENGTH = "inference-header-content-length"


def decode_request(
    body: bytes, header_length: int | None, model: str, version: str | None, rules: InputRules
) -> InferRequest:
    """Decode a V2 infer request (JSON, or JSON header + binary tensors) for a resolved model."""
    if header_length is None:
        header_end = len(body)
    elif header_length < 0 or header_length > len(body):
        raise InvalidInput(f"Inference-Header-Content-Length is {header_length} but the body has {len(body)} bytes")
    else:
        header_end = header_length
    view = memoryview(body)
    doc = parse_json(body if header_length is None else view[:header_end])
    if not isinstance(doc, dict):
        raise InvalidInput("request body must be a JSON object")
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidInput("'inputs' must be a non-empty list of tensors")
    offset = header_end
    inputs = []
    for i, item in enumerate(raw_inputs):
        tensor, offset = _decode_input(item, i, view, offset, rules)
        inputs.append(tensor)
    if offset != len(body):
        raise InvalidInput(
            f"body has {len(body) - offset} bytes after the last binary input (check binary_data_size values)"
        )
    request_id, outputs, parameters = doc.get("id"), doc.get("outputs"), doc.get("parameters")
    return InferRequest(  # positional (model_name, inputs, model_version, id, outputs, parameters): cheaper
        model,
        inputs,
        version,
        None if request_id is None else _optional_str(request_id, "id"),
        None if outputs is None else _decode_outputs(outputs),
        {} if parameters is None else _parameters(parameters, "parameters"),
    )


def decode_raw_single_input(body: bytes, model: str, version: str | None, rules: InputRules) -> InferRequest:
    """``Inference-Header-Content-Length: 0``: the whole body is the one input's raw data."""
    if len(rules.specs) != 1:
        raise InvalidInput(f"a header-less binary body needs a single-input model; {model!r} has {len(rules.specs)}")
    spec = next(iter(rules.specs.values()))
    if spec.datatype == "BYTES":
        raise InvalidInput("a header-less binary body cannot carry a BYTES input; send a JSON header")
    itemsize = numpy_dtype(spec.datatype).itemsize
    fixed = math.prod(d for d in spec.shape if d != -1)
    dynamic = [i for i, d in enumerate(spec.shape) if d == -1]
    count, rest = divmod(len(body), itemsize)
    if rest or len(dynamic) > 1 or (fixed and count % fixed):
        raise InvalidInput(
            f"a {len(body)}-byte body does not fit input {spec.name!r} of shape {list(spec.shape)} {spec.datatype}"
        )
    shape = [count // fixed if d == -1 else d for d in spec.shape] if fixed else [count]
    header = rules.check(spec.name, spec.datatype, shape)
    data = array_from_raw(spec.name, spec.datatype, header.shape, header.elements, body, "the body")
    return InferRequest(model, [Tensor(spec.name, spec.datatype, data)], model_version=version)


def _decode_input(item: Any, index: int, view: memoryview, offset: int, rules: InputRules) -> tuple[Tensor, int]:
    if not isinstance(item, dict):
        raise InvalidInput(f"inputs[{index}] must be an object")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"inputs[{index}].name must be a non-empty string")
    header = rules.check(name, item.get("datatype"), item.get("shape"))
    raw_params = item.get("parameters")
    if raw_params is None and "data" in item:  # the common case: JSON data, no parameters
        return Tensor(name, header.datatype, _from_json(item["data"], header), {}), offset
    params = _parameters(raw_params, f"input {name!r} parameters")
    size = params.pop("binary_data_size", None)
    if size is not None:
        if type(size) is not int or size < 0:
            raise InvalidInput(f"input {name!r}: binary_data_size must be a non-negative integer")
        if offset + size > len(view):
            raise InvalidInput(
                f"input {name!r}: binary_data_size {size} runs past the end of the body ({len(view) - offset} left)"
            )
        chunk = view[offset : offset + size]
        data = array_from_raw(name, header.datatype, header.shape, header.elements, chunk, "binary_data_size")
        return Tensor(name, header.datatype, data, params), offset + size
    if "data" not in item:
        raise InvalidInput(f"input {name!r}: needs 'data' or parameters.binary_data_size")
    return Tensor(name, header.datatype, _from_json(item["data"], header), params), offset


def _from_json(data: Any, header: TensorHeader) -> np.ndarray:
    """JSON data, flat or nested as the shape; the element count is read before converting."""
    if not isinstance(data, list):
        data = [data]
    shape = nested_shape(header.name, data)
    count = math.prod(shape)
    if count != header.elements:
        raise InvalidInput(
            f"input {header.name!r}: shape {list(header.shape)} needs {header.elements} elements, data has {count}"
        )
    return array_from_json(header.name, header.datatype, data, shape=shape).reshape(header.shape)


def _decode_outputs(value: Any) -> list[RequestedOutput] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise InvalidInput("'outputs' must be a list")
    outputs = []
    for i, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            raise InvalidInput(f"outputs[{i}] must be an object with a non-empty string 'name'")
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


# -- client side: building requests, reading responses (tests, load tests, Python callers) -----------


def encode_request(request: InferRequest, *, binary: bool = False) -> tuple[bytes, int | None]:
    """A request body (JSON, or JSON header + raw tensors) and its header length when binary."""
    chunks: list[bytes] = []
    inputs = []
    for tensor in request.inputs:
        entry: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape)}
        if binary:
            raw = array_to_raw(tensor.data, tensor.datatype)
            entry["parameters"] = {**tensor.parameters, "binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = array_to_json(tensor.name, tensor.data, tensor.datatype)
            if tensor.parameters:
                entry["parameters"] = tensor.parameters
        inputs.append(entry)
    doc: dict[str, Any] = {"inputs": inputs}
    if request.id is not None:
        doc["id"] = request.id
    if request.parameters:
        doc["parameters"] = request.parameters
    if request.outputs:
        doc["outputs"] = [{"name": o.name, "parameters": o.parameters} for o in request.outputs]
    header = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    if not binary:
        return header, None
    return b"".join([header, *chunks]), len(header)


def decode_response(body: bytes, header_length: int | None = None) -> InferResponse:
    """Read what a V2 server answered (JSON outputs or binary ones)."""
    end = len(body) if header_length is None else header_length
    doc = parse_json(memoryview(body)[:end], "response body")
    offset = end
    outputs = []
    for item in doc["outputs"]:
        name, datatype = item["name"], item["datatype"]
        shape = check_dims(name, item["shape"])
        count = check_shape(name, datatype, shape)
        size = (item.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            data = array_from_raw(name, datatype, shape, count, memoryview(body)[offset : offset + size])
            offset += size
        else:
            data = array_from_json(name, datatype, item["data"]).reshape(shape)
        outputs.append(Tensor(name, datatype, data))
    return InferResponse(doc["model_name"], str(doc.get("model_version", "")), outputs, id=doc.get("id"))


# -- server side: responses ------------------------------------------------------------------------


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
            raw = array_to_raw(tensor.data, tensor.datatype)
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = array_to_json(tensor.name, tensor.data, tensor.datatype)
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
