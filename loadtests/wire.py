"""Request bodies and response decoding for every protocol, for tensors of any datatype and shape.

- V2 REST JSON: ``data`` as flat lists (BYTES as UTF-8 strings, FP16 as numbers);
- V2 REST binary (Triton's extension): raw little-endian bytes, BYTES length-prefixed, outputs binary too;
- V2 gRPC: ``raw_input_contents`` / ``raw_output_contents``;
- TF Serving REST: the columnar format (``{"inputs": {name: nested lists}}``, BYTES as ``{"b64": ...}``),
  which works for every signature (the row format needs every tensor to share a batch dimension);
- TF Serving gRPC: ``PredictRequest`` with ``TensorProto`` inputs, from the gateway's compiled protos
  (no TensorFlow import).

Decoders return ``{name: Output}``; a malformed response raises :class:`WrongAnswer`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from gateway.core.codec.datatypes import V2_TO_NUMPY
from gateway.core.codec.limits import TensorLimits, check_dims, check_shape
from gateway.core.codec.raw import array_from_raw, array_to_raw
from gateway.core.codec.values import array_from_json, array_to_json
from gateway.core.errors import GatewayError
from loadtests.tensors import TensorSpec

HEADER_LENGTH = "Inference-Header-Content-Length"


#: Answers are bounded by the gateway's own response size, not by a client-facing tensor limit.
_ANSWER_LIMITS = TensorLimits(max_bytes=2**40)


class WrongAnswer(Exception):
    """The response arrived but is not the right answer (message names what differs)."""


@dataclass(frozen=True)
class Output:
    """One decoded output; ``datatype`` is None when the protocol does not carry it (TF Serving JSON)."""

    datatype: str | None
    data: np.ndarray


def _raw(array: np.ndarray, datatype: str) -> bytes:
    return array_to_raw(array, datatype)


def _json_data(array: np.ndarray, datatype: str) -> Any:
    return array_to_json("input", array, datatype)


def utf8_problem(tensors: Mapping[str, np.ndarray], specs: Sequence[TensorSpec]) -> str | None:
    """Why a BYTES input cannot travel as V2 JSON (not UTF-8), or None."""
    for spec in specs:
        if spec.datatype != "BYTES":
            continue
        for value in tensors[spec.name].reshape(-1):
            try:
                bytes(value).decode("utf-8")
            except UnicodeDecodeError:
                return f"input {spec.name!r} holds BYTES that are not UTF-8, which V2 JSON cannot carry"
    return None


def v2_json_body(tensors: Mapping[str, np.ndarray], specs: Sequence[TensorSpec]) -> bytes:
    inputs = [
        {
            "name": s.name,
            "shape": list(tensors[s.name].shape),
            "datatype": s.datatype,
            "data": _json_data(tensors[s.name], s.datatype),
        }
        for s in specs
    ]
    return orjson.dumps({"inputs": inputs}, option=orjson.OPT_SERIALIZE_NUMPY)


def v2_binary_body(tensors: Mapping[str, np.ndarray], specs: Sequence[TensorSpec]) -> tuple[bytes, int]:
    """The body (JSON header + raw tensors) and the header's length; every output is asked for in binary."""
    chunks = [_raw(tensors[s.name], s.datatype) for s in specs]
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": s.name,
                    "shape": list(tensors[s.name].shape),
                    "datatype": s.datatype,
                    "parameters": {"binary_data_size": len(chunk)},
                }
                for s, chunk in zip(specs, chunks, strict=True)
            ],
            "parameters": {"binary_data_output": True},
        }
    )
    return b"".join([header, *chunks]), len(header)


def _from_raw(raw: bytes, datatype: str, shape: list[int], name: str) -> np.ndarray:
    """An output's raw bytes through the gateway's own codec; anything malformed is a wrong answer."""
    if datatype not in V2_TO_NUMPY:
        raise WrongAnswer(f"output {name!r} has unknown datatype {datatype!r}")
    try:
        dims = check_dims(name, shape)
        return array_from_raw(name, datatype, dims, check_shape(name, datatype, dims, _ANSWER_LIMITS), raw)
    except GatewayError as exc:
        raise WrongAnswer(f"output {name!r}: {exc.message}") from None


def _from_json(entry: Mapping[str, Any], name: str, datatype: str, shape: list[int]) -> np.ndarray:
    data = entry.get("data")
    if not isinstance(data, list):
        raise WrongAnswer(f"output {name!r} has no 'data' list")
    if datatype not in V2_TO_NUMPY:
        raise WrongAnswer(f"output {name!r} has unknown datatype {datatype!r}")
    try:
        flat = array_from_json(name, datatype, data, finite=False).reshape(-1)
    except GatewayError as exc:
        raise WrongAnswer(f"output {name!r}: data is not {datatype} ({exc.message})") from None
    if flat.size != int(np.prod(shape)):
        raise WrongAnswer(f"output {name!r} has {flat.size} values for shape {shape}")
    return flat.reshape(shape)


def parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise WrongAnswer("response is not JSON") from None


def _v2_header(doc: Any) -> list[Mapping[str, Any]]:
    outputs = doc.get("outputs") if isinstance(doc, dict) else None
    if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
        raise WrongAnswer("response has no 'outputs' list")
    return outputs


def _entry(entry: Mapping[str, Any]) -> tuple[str, str, list[int]]:
    name, datatype, shape = entry.get("name"), entry.get("datatype"), entry.get("shape")
    if not isinstance(name, str) or not isinstance(datatype, str):
        raise WrongAnswer("an output has no name or datatype")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise WrongAnswer(f"output {name!r} has no valid shape")
    return name, datatype, shape


def decode_v2(body: bytes, header_length: str | None) -> dict[str, Output]:
    """A V2 REST response, JSON or binary (``Inference-Header-Content-Length`` present)."""
    if header_length is None:
        json_length = len(body)
    else:
        try:
            json_length = int(header_length)
        except ValueError:
            raise WrongAnswer(f"{HEADER_LENGTH} is not an integer: {header_length!r}") from None
        if not 0 < json_length <= len(body):
            raise WrongAnswer(f"{HEADER_LENGTH} {json_length} does not fit a {len(body)}-byte body")
    offset = json_length
    decoded: dict[str, Output] = {}
    for entry in _v2_header(parse_json(body[:json_length])):
        name, datatype, shape = _entry(entry)
        parameters = entry.get("parameters")
        size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
        if isinstance(size, int):
            if offset + size > len(body):
                raise WrongAnswer(f"output {name!r} binary data runs past the end of the body")
            decoded[name] = Output(datatype, _from_raw(body[offset : offset + size], datatype, shape, name))
            offset += size
        else:
            decoded[name] = Output(datatype, _from_json(entry, name, datatype, shape))
    return decoded


def v2_grpc_request(
    model: str, version: str | None, tensors: Mapping[str, np.ndarray], specs: Sequence[TensorSpec]
) -> Any:
    from gateway.protos import open_inference_grpc_pb2 as pb

    return pb.ModelInferRequest(
        model_name=model,
        model_version=version or "",
        inputs=[
            pb.ModelInferRequest.InferInputTensor(name=s.name, datatype=s.datatype, shape=list(tensors[s.name].shape))
            for s in specs
        ],
        raw_input_contents=[_raw(tensors[s.name], s.datatype) for s in specs],
    )


def decode_v2_grpc(response: Any) -> dict[str, Output]:
    """A ``ModelInferResponse``: ``raw_output_contents`` (the gateway's choice) or typed ``contents``."""
    decoded: dict[str, Output] = {}
    raw = list(response.raw_output_contents)
    for i, output in enumerate(response.outputs):
        shape = [int(d) for d in output.shape]
        if i < len(raw):
            data = _from_raw(raw[i], output.datatype, shape, output.name)
        else:
            data = _typed_contents(output, shape)
        decoded[output.name] = Output(output.datatype, data)
    return decoded


_CONTENTS_FIELD = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
}  # fmt: skip


def _typed_contents(output: Any, shape: list[int]) -> np.ndarray:
    field = _CONTENTS_FIELD.get(output.datatype)
    if field is None:
        raise WrongAnswer(f"output {output.name!r}: {output.datatype} has no typed contents")
    values = list(getattr(output.contents, field))
    if output.datatype == "BYTES":
        flat = np.empty(len(values), dtype=object)
        flat[:] = values
    else:
        flat = np.asarray(values, dtype=V2_TO_NUMPY[output.datatype])
    if flat.size != int(np.prod(shape)):
        raise WrongAnswer(f"output {output.name!r} has {flat.size} values for shape {shape}")
    return flat.reshape(shape)


def _tfs_json(array: np.ndarray, datatype: str) -> Any:
    if datatype == "BYTES":
        encoded = np.empty(array.shape, dtype=object)
        flat = encoded.reshape(-1)
        flat[:] = [{"b64": base64.b64encode(bytes(v)).decode("ascii")} for v in array.reshape(-1)]
        return encoded.tolist()
    if datatype == "FP16":
        return array.astype(np.float32).tolist()
    return array.tolist()


def tfs_rest_body(tensors: Mapping[str, np.ndarray], specs: Sequence[TensorSpec]) -> bytes:
    """TF Serving ``:predict`` in the columnar format, inputs named."""
    return orjson.dumps({"inputs": {s.name: _tfs_json(tensors[s.name], s.datatype) for s in specs}})


def _tfs_leaf_bytes(value: Any) -> Any:
    if isinstance(value, list):
        return [_tfs_leaf_bytes(v) for v in value]
    if isinstance(value, dict) and set(value) == {"b64"} and isinstance(value["b64"], str):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except binascii.Error:
            raise WrongAnswer("an output holds invalid base64") from None
    if isinstance(value, str):
        return value.encode("utf-8")
    raise WrongAnswer("a BYTES output holds something other than strings")


def _tfs_array(value: Any, spec: TensorSpec | None) -> np.ndarray:
    if spec is not None and spec.datatype == "BYTES":
        leaves = _tfs_leaf_bytes(value)
        probe = np.asarray(leaves, dtype=object) if isinstance(leaves, list) else np.asarray([leaves], dtype=object)
        return probe if isinstance(leaves, list) else probe.reshape(())
    try:
        array = np.asarray(value, dtype=None if spec is None else V2_TO_NUMPY[spec.datatype])
    except (ValueError, TypeError):
        raise WrongAnswer("an output is not a numeric array (ragged lists?)") from None
    if array.dtype == object:
        raise WrongAnswer("an output is not a numeric array")
    return array


def decode_tfs_rest(body: bytes, outputs: Sequence[TensorSpec]) -> dict[str, Output]:
    """``{"outputs": value}`` (one output) or ``{"outputs": {name: value}}``; datatypes are not on the wire."""
    doc = parse_json(body)
    if not isinstance(doc, dict) or "outputs" not in doc:
        raise WrongAnswer("response has no 'outputs'")
    value = doc["outputs"]
    by_name = {s.name: s for s in outputs}
    if len(outputs) == 1 and not (isinstance(value, dict) and set(value) == {outputs[0].name}):
        return {outputs[0].name: Output(None, _tfs_array(value, outputs[0]))}
    if not isinstance(value, dict):
        raise WrongAnswer("'outputs' is not an object of named outputs")
    return {name: Output(None, _tfs_array(v, by_name.get(name))) for name, v in value.items()}


def tfs_grpc_request(
    model: str, version: str | None, tensors: Mapping[str, np.ndarray], specs: Sequence[TensorSpec]
) -> Any:
    from google.protobuf import wrappers_pb2

    from gateway.core.types import Tensor
    from gateway.protos.tfserving.tensorflow_serving.apis import model_pb2, predict_pb2
    from gateway.tensorproto import tensor_to_proto

    spec = model_pb2.ModelSpec(name=model)
    if version:
        spec.version.CopyFrom(wrappers_pb2.Int64Value(value=int(version)))
    request = predict_pb2.PredictRequest(model_spec=spec)
    for s in specs:
        request.inputs[s.name].CopyFrom(tensor_to_proto(Tensor(s.name, s.datatype, tensors[s.name])))
    return request


def decode_tfs_grpc(response: Any) -> dict[str, Output]:
    from gateway.tensorproto import V2_DATATYPE, tensor_from_proto

    decoded: dict[str, Output] = {}
    for name, proto in response.outputs.items():
        try:
            tensor = tensor_from_proto(name, proto)
        except GatewayError:
            raise WrongAnswer(f"output {name!r} is not a valid TensorProto") from None
        decoded[name] = Output(V2_DATATYPE.get(proto.dtype), tensor.data)
    return decoded
