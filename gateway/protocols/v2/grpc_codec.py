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

from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from typing import Any, Final

import numpy as np

from gateway.core.codec.limits import InputRules, check_dims, check_shape
from gateway.core.codec.raw import array_from_raw, array_to_raw, as_bytes
from gateway.core.codec.values import array_from_field
from gateway.core.dataplane import ModelMetadata
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


def contents_to_array(
    name: str, datatype: str, shape: Sequence[int], count: int, contents: pb.InferTensorContents
) -> np.ndarray:
    """Typed ``contents`` as an array, refusing the wrong field, a wrong count or out-of-range values."""
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        raise InvalidInput(f"input {name!r}: {datatype} has no typed contents field; send it in raw_input_contents")
    _check_only_field(name, datatype, field, contents)
    values = getattr(contents, field)
    return array_from_field(name, datatype, values, _FIELD_DTYPE.get(field), count, f"contents.{field}").reshape(shape)


def _check_only_field(name: str, datatype: str, field: str, contents: pb.InferTensorContents) -> None:
    others = sorted(descriptor.name for descriptor, _ in contents.ListFields() if descriptor.name != field)
    if others:
        raise InvalidInput(f"input {name!r}: datatype {datatype} takes contents.{field}, not {', '.join(others)}")


def array_to_contents(array: np.ndarray, datatype: str) -> pb.InferTensorContents:
    """An array as typed contents (the slow, JSON-like form; FP16 cannot be sent this way)."""
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        raise Unsupported(f"{datatype} has no typed contents field; send it raw")
    contents = pb.InferTensorContents()
    flat = array.reshape(-1)
    values: Iterable[Any] = (as_bytes(item) for item in flat) if datatype == "BYTES" else flat.tolist()
    getattr(contents, field).extend(values)
    return contents


# -- requests ------------------------------------------------------------------------------


class ModelInferRequestConverter:
    """``ModelInferRequest`` <-> core :class:`InferRequest`."""

    @staticmethod
    def to_types(message: pb.ModelInferRequest, rules: InputRules) -> InferRequest:
        """Decode a request for the resolved model whose input rules are ``rules``."""
        return InferRequest(
            model_name=message.model_name,
            model_version=message.model_version or None,
            id=message.id or None,
            inputs=_decode_inputs(message, rules),
            outputs=[RequestedOutput(_output_name(o.name), parameters_to_types(o.parameters)) for o in message.outputs]
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


def _output_name(name: str) -> str:
    if not name:
        raise InvalidInput("a requested output has an empty name")
    return name


def _decode_inputs(message: pb.ModelInferRequest, rules: InputRules) -> list[Tensor]:
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
        return [_raw_input(entry, buffer, rules) for entry, buffer in zip(message.inputs, raw, strict=True)]
    return [_typed_input(entry, rules) for entry in message.inputs]


def _raw_input(entry: pb.ModelInferRequest.InferInputTensor, buffer: bytes, rules: InputRules) -> Tensor:
    header = rules.check(entry.name, entry.datatype, list(entry.shape))
    array = array_from_raw(header.name, header.datatype, header.shape, header.elements, buffer, "raw_input_contents")
    return Tensor(entry.name, entry.datatype, array, parameters_to_types(entry.parameters))


def _typed_input(entry: pb.ModelInferRequest.InferInputTensor, rules: InputRules) -> Tensor:
    header = rules.check(entry.name, entry.datatype, list(entry.shape))
    if not entry.contents.ListFields() and header.elements > 0:
        raise InvalidInput(f"input {header.name!r} has no data: set its contents or send raw_input_contents")
    array = contents_to_array(header.name, header.datatype, header.shape, header.elements, entry.contents)
    return Tensor(entry.name, entry.datatype, array, parameters_to_types(entry.parameters))


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
            shape = check_dims(entry.name, list(entry.shape))
            count = check_shape(entry.name, entry.datatype, shape)
            if raw:
                array = array_from_raw(entry.name, entry.datatype, shape, count, raw[index], "raw_output_contents")
            else:
                array = contents_to_array(entry.name, entry.datatype, shape, count, entry.contents)
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
