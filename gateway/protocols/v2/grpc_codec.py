"""Converters between Open Inference Protocol gRPC messages and the core types, one class per message.

Inputs arrive either as ``raw_input_contents`` (one little-endian buffer per input, decoded
with ``np.frombuffer`` without copying) or as typed ``contents``; responses always use
``raw_output_contents``, as Triton does, because it is the fastest form for both sides.
Every decoding problem raises :class:`InvalidInput` naming the input or field, so a client
mistake becomes INVALID_ARGUMENT, never INTERNAL.

The client-side directions (``from_types`` for requests, ``to_types`` for responses) are
here too: tests, load tests and any Python caller build requests the same way.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from typing import Any, Final

import numpy as np

from gateway.core.dataplane import ModelMetadata
from gateway.core.datatypes import V2_TO_NUMPY, deserialize_bytes_tensor, numpy_dtype, serialize_bytes_tensor
from gateway.core.errors import InvalidInput, Unsupported
from gateway.core.types import InferRequest, InferResponse, RequestedOutput, Tensor, TensorSpec
from gateway.protos import open_inference_grpc_pb2 as pb

#: V2 datatype -> the InferTensorContents field that carries it (FP16 has none: raw only).
CONTENTS_FIELD: Final[Mapping[str, str]] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}

#: The numpy dtype each contents field holds on the wire (narrower datatypes are range-checked).
_FIELD_DTYPE: Final[Mapping[str, np.dtype[Any]]] = {
    "bool_contents": np.dtype(np.bool_),
    "int_contents": np.dtype(np.int32),
    "int64_contents": np.dtype(np.int64),
    "uint_contents": np.dtype(np.uint32),
    "uint64_contents": np.dtype(np.uint64),
    "fp32_contents": np.dtype(np.float32),
    "fp64_contents": np.dtype(np.float64),
}

_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_UINT64_MAX: Final = 2**64 - 1

ParameterMap = MutableMapping[str, pb.InferParameter]


# -- parameters ----------------------------------------------------------------------------


class InferParameterConverter:
    """``InferParameter`` (a oneof) <-> a Python bool, int, float or str."""

    @staticmethod
    def to_types(parameter: pb.InferParameter, key: str) -> bool | int | float | str:
        choice = parameter.WhichOneof("parameter_choice")
        if choice is None:
            raise InvalidInput(f"parameter {key!r} has no value (set one of bool/int64/uint64/double/string_param)")
        value: bool | int | float | str = getattr(parameter, choice)
        return value

    @staticmethod
    def from_types(value: object, key: str) -> pb.InferParameter:
        # bool before int: True is an int in Python but must stay a bool_param on the wire.
        if isinstance(value, bool):
            return pb.InferParameter(bool_param=value)
        if isinstance(value, int):
            return _int_parameter(value, key)
        if isinstance(value, float):
            return pb.InferParameter(double_param=value)
        if isinstance(value, str):
            return pb.InferParameter(string_param=value)
        raise Unsupported(
            f"parameter {key!r}: a {type(value).__name__} cannot be sent over gRPC (bool, int, float, str)"
        )


def _int_parameter(value: int, key: str) -> pb.InferParameter:
    if _INT64_MIN <= value <= _INT64_MAX:
        return pb.InferParameter(int64_param=value)
    if 0 <= value <= _UINT64_MAX:
        return pb.InferParameter(uint64_param=value)
    raise Unsupported(f"parameter {key!r}: {value} does not fit in 64 bits")


def parameters_to_types(parameters: Mapping[str, pb.InferParameter]) -> dict[str, Any]:
    if not parameters:  # the common case, and iterating an empty protobuf map still costs a microsecond
        return {}
    return {key: InferParameterConverter.to_types(value, key) for key, value in parameters.items()}


def fill_parameters(target: ParameterMap, parameters: Mapping[str, Any]) -> None:
    """Copy Python parameters into a protobuf map field (maps cannot be assigned whole)."""
    for key, value in parameters.items():
        target[key].CopyFrom(InferParameterConverter.from_types(value, key))


# -- tensors -------------------------------------------------------------------------------


def element_count(name: str, shape: Sequence[int]) -> int:
    """Elements in a tensor of ``shape``; a negative dimension is the client's mistake."""
    if any(dim < 0 for dim in shape):
        raise InvalidInput(f"input {name!r}: shape {list(shape)} has a negative dimension")
    return math.prod(shape)


def tensor_dtype(name: str, datatype: str) -> np.dtype[Any]:
    """The numpy dtype of a V2 datatype, with the error naming the input."""
    try:
        return numpy_dtype(datatype)
    except InvalidInput as exc:
        raise InvalidInput(f"input {name!r}: {exc.message}") from None


def raw_to_array(name: str, datatype: str, shape: Sequence[int], buffer: bytes) -> np.ndarray:
    """One ``raw_input_contents`` entry as an array (zero-copy for fixed-size datatypes)."""
    dtype = tensor_dtype(name, datatype)
    count = element_count(name, shape)
    if datatype == "BYTES":
        if count * 4 > len(buffer):  # each element has a 4-byte length: refuse before allocating
            raise InvalidInput(
                f"input {name!r}: raw_input_contents has {len(buffer)} bytes, too few for {count} BYTES elements"
            )
        return deserialize_bytes_tensor(buffer, count, name).reshape(shape)
    expected = count * dtype.itemsize
    if len(buffer) != expected:
        raise InvalidInput(
            f"input {name!r}: raw_input_contents has {len(buffer)} bytes; shape {list(shape)} of {datatype} "
            f"needs {expected} ({count} elements x {dtype.itemsize} bytes)"
        )
    array = np.frombuffer(buffer, dtype=dtype).reshape(shape)
    if datatype == "BOOL" and array.size and int(array.view(np.uint8).max()) > 1:
        raise InvalidInput(f"input {name!r}: BOOL raw bytes must each be 0 or 1")
    return array


def array_to_raw(array: np.ndarray, datatype: str) -> bytes:
    """An array as the V2 raw form: little-endian row-major bytes, or length-prefixed BYTES."""
    if datatype == "BYTES":
        return serialize_bytes_tensor(array)
    return np.ascontiguousarray(array, dtype=V2_TO_NUMPY[datatype]).tobytes()


def contents_to_array(name: str, datatype: str, shape: Sequence[int], contents: pb.InferTensorContents) -> np.ndarray:
    """Typed ``contents`` as an array, refusing the wrong field, a wrong count or out-of-range values."""
    dtype = tensor_dtype(name, datatype)
    count = element_count(name, shape)
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        raise InvalidInput(f"input {name!r}: {datatype} has no typed contents field; send it in raw_input_contents")
    _check_only_field(name, datatype, field, contents)
    values = getattr(contents, field)
    if len(values) != count:
        raise InvalidInput(
            f"input {name!r}: contents.{field} has {len(values)} values; shape {list(shape)} needs {count}"
        )
    if datatype == "BYTES":
        array = np.empty(count, dtype=object)
        array[:] = list(values)
        return array.reshape(shape)
    return _narrow(name, datatype, np.asarray(values, dtype=_FIELD_DTYPE[field]), dtype).reshape(shape)


def _check_only_field(name: str, datatype: str, field: str, contents: pb.InferTensorContents) -> None:
    others = sorted(descriptor.name for descriptor, _ in contents.ListFields() if descriptor.name != field)
    if others:
        raise InvalidInput(f"input {name!r}: datatype {datatype} takes contents.{field}, not {', '.join(others)}")


def _narrow(name: str, datatype: str, wide: np.ndarray, dtype: np.dtype[Any]) -> np.ndarray:
    """Cast int_contents/uint_contents to INT8/16 or UINT8/16, refusing values that would wrap."""
    if wide.dtype == dtype:
        return wide
    info = np.iinfo(dtype)
    if wide.size and (int(wide.min()) < info.min or int(wide.max()) > info.max):
        raise InvalidInput(f"input {name!r}: a value is outside the {datatype} range [{info.min}, {info.max}]")
    return wide.astype(dtype)


def array_to_contents(array: np.ndarray, datatype: str) -> pb.InferTensorContents:
    """An array as typed contents (the slow, JSON-like form; FP16 cannot be sent this way)."""
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        raise Unsupported(f"{datatype} has no typed contents field; send it raw")
    contents = pb.InferTensorContents()
    flat = array.reshape(-1)
    values: Iterable[Any] = (_as_bytes(item) for item in flat) if datatype == "BYTES" else flat.tolist()
    getattr(contents, field).extend(values)
    return contents


def _as_bytes(item: object) -> bytes:
    return item.encode("utf-8") if isinstance(item, str) else bytes(item)  # type: ignore[call-overload]


# -- requests ------------------------------------------------------------------------------


class ModelInferRequestConverter:
    """``ModelInferRequest`` <-> core :class:`InferRequest`."""

    @staticmethod
    def to_types(message: pb.ModelInferRequest) -> InferRequest:
        if not message.model_name:
            raise InvalidInput("model_name is required")
        return InferRequest(
            model_name=message.model_name,
            model_version=message.model_version or None,
            id=message.id or None,
            inputs=_decode_inputs(message),
            outputs=[RequestedOutput(output.name, parameters_to_types(output.parameters)) for output in message.outputs]
            or None,
            parameters=parameters_to_types(message.parameters),
        )

    @staticmethod
    def from_types(request: InferRequest, *, raw: bool = True) -> pb.ModelInferRequest:
        """Build the message a client sends; ``raw=False`` uses typed contents instead."""
        message = pb.ModelInferRequest(
            model_name=request.model_name, model_version=request.model_version or "", id=request.id or ""
        )
        fill_parameters(message.parameters, request.parameters)
        for tensor in request.inputs:
            entry = message.inputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
            fill_parameters(entry.parameters, tensor.parameters)
            if raw:
                message.raw_input_contents.append(array_to_raw(tensor.data, tensor.datatype))
            else:
                entry.contents.CopyFrom(array_to_contents(tensor.data, tensor.datatype))
        for output in request.outputs or ():
            wanted = message.outputs.add(name=output.name)
            fill_parameters(wanted.parameters, output.parameters)
        return message


def _decode_inputs(message: pb.ModelInferRequest) -> list[Tensor]:
    raw = message.raw_input_contents
    if raw:
        typed = [entry.name for entry in message.inputs if entry.contents.ListFields()]
        if typed:
            raise InvalidInput(
                f"inputs {typed} have contents while raw_input_contents is used; send every input one way"
            )
        if len(raw) != len(message.inputs):
            raise InvalidInput(
                f"raw_input_contents has {len(raw)} entries but the request has {len(message.inputs)} inputs"
            )
        return [_raw_input(entry, buffer) for entry, buffer in zip(message.inputs, raw, strict=True)]
    return [_typed_input(entry) for entry in message.inputs]


def _raw_input(entry: pb.ModelInferRequest.InferInputTensor, buffer: bytes) -> Tensor:
    array = raw_to_array(_input_name(entry), entry.datatype, entry.shape, buffer)
    return Tensor(entry.name, entry.datatype, array, parameters_to_types(entry.parameters))


def _typed_input(entry: pb.ModelInferRequest.InferInputTensor) -> Tensor:
    name = _input_name(entry)
    if not entry.contents.ListFields() and element_count(name, entry.shape) > 0:
        raise InvalidInput(f"input {name!r} has no data: set its contents or send raw_input_contents")
    array = contents_to_array(name, entry.datatype, entry.shape, entry.contents)
    return Tensor(entry.name, entry.datatype, array, parameters_to_types(entry.parameters))


def _input_name(entry: pb.ModelInferRequest.InferInputTensor) -> str:
    if not entry.name:
        raise InvalidInput("an input has an empty name")
    return entry.name


# -- responses -----------------------------------------------------------------------------


class ModelInferResponseConverter:
    """Core :class:`InferResponse` <-> ``ModelInferResponse`` (always raw outputs)."""

    @staticmethod
    def from_types(response: InferResponse) -> pb.ModelInferResponse:
        message = pb.ModelInferResponse(
            model_name=response.model_name, model_version=response.model_version, id=response.id or ""
        )
        fill_parameters(message.parameters, response.parameters)
        for tensor in response.outputs:
            entry = message.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
            fill_parameters(entry.parameters, tensor.parameters)
            message.raw_output_contents.append(array_to_raw(tensor.data, tensor.datatype))
        return message

    @staticmethod
    def to_types(message: pb.ModelInferResponse) -> InferResponse:
        """Decode what a server sent: raw outputs, or typed contents when there are none."""
        raw = message.raw_output_contents
        if raw and len(raw) != len(message.outputs):
            raise InvalidInput(f"raw_output_contents has {len(raw)} entries for {len(message.outputs)} outputs")
        outputs = []
        for index, entry in enumerate(message.outputs):
            if raw:
                array = raw_to_array(entry.name, entry.datatype, entry.shape, raw[index])
            else:
                array = contents_to_array(entry.name, entry.datatype, entry.shape, entry.contents)
            outputs.append(Tensor(entry.name, entry.datatype, array, parameters_to_types(entry.parameters)))
        return InferResponse(
            model_name=message.model_name,
            model_version=message.model_version,
            outputs=outputs,
            id=message.id or None,
            parameters=parameters_to_types(message.parameters),
        )


# -- metadata ------------------------------------------------------------------------------


def tensor_metadata(spec: TensorSpec) -> pb.ModelMetadataResponse.TensorMetadata:
    return pb.ModelMetadataResponse.TensorMetadata(name=spec.name, datatype=spec.datatype, shape=spec.shape)


def server_metadata_response(metadata: Mapping[str, Any]) -> pb.ServerMetadataResponse:
    return pb.ServerMetadataResponse(
        name=metadata["name"], version=metadata["version"], extensions=list(metadata["extensions"])
    )


def model_metadata_response(metadata: ModelMetadata) -> pb.ModelMetadataResponse:
    return pb.ModelMetadataResponse(
        name=metadata.name,
        versions=metadata.versions,
        platform=metadata.platform,
        inputs=[tensor_metadata(spec) for spec in metadata.inputs],
        outputs=[tensor_metadata(spec) for spec in metadata.outputs],
    )
