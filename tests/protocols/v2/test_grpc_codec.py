"""The gRPC codec on its own: every datatype both ways, and every decoding mistake named."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from gateway.core.codec.datatypes import V2_TO_NUMPY
from gateway.core.codec.limits import InputRules, TensorLimits
from gateway.core.codec.raw import array_from_raw, array_to_raw
from gateway.core.errors import InvalidInput, Unsupported
from gateway.core.types import InferRequest, InferResponse, RequestedOutput, Tensor, TensorSpec
from gateway.protocols.v2.grpc_codec import (
    CONTENTS_FIELD,
    InferParameterConverter,
    ModelInferRequestConverter,
    ModelInferResponseConverter,
)
from gateway.protos import open_inference_grpc_pb2 as pb

ALL_TYPES = sorted(V2_TO_NUMPY)
TYPED = sorted(CONTENTS_FIELD)


def sample(datatype: str, shape: tuple[int, ...] = (2, 3)) -> np.ndarray:
    """Deterministic values that use each type's range (negatives, extremes, non-ASCII bytes)."""
    count = int(np.prod(shape))
    if datatype == "BYTES":
        items = [f"é{i}".encode() * i for i in range(count)]
        array = np.empty(count, dtype=object)
        array[:] = items
        return array.reshape(shape)
    dtype = V2_TO_NUMPY[datatype]
    if datatype == "BOOL":
        flags: np.ndarray = np.arange(count) % 2 == 0
        return flags.reshape(shape)
    if dtype.kind in "iu":
        info = np.iinfo(dtype.str)
        pool = [int(info.min), int(info.max), 0, 1, int(info.max) - 1, int(info.min) + 1]
        return np.array([pool[i % len(pool)] for i in range(count)], dtype=dtype).reshape(shape)
    return (np.arange(count, dtype=dtype) - 2.5).reshape(shape)


def decode(message: pb.ModelInferRequest) -> InferRequest:
    """Decode with rules that accept the message's own names, datatypes and ranks (the codec's checks remain)."""
    specs = [TensorSpec(e.name, e.datatype, tuple(-1 for _ in e.shape)) for e in message.inputs]
    return ModelInferRequestConverter.to_types(message, InputRules.for_inputs(specs, 0, TensorLimits(1 << 30)))


def request_with(tensor: Tensor, *, raw: bool) -> pb.ModelInferRequest:
    return ModelInferRequestConverter.from_types(InferRequest("m", [tensor]), raw=raw)


def assert_same(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.shape == expected.shape
    assert actual.dtype == expected.dtype
    assert actual.tolist() == expected.tolist()


@pytest.mark.parametrize("datatype", ALL_TYPES)
@pytest.mark.parametrize("shape", [(2, 3), (0, 3), (1,)])
def test_every_datatype_round_trips_raw(datatype: str, shape: tuple[int, ...]) -> None:
    data = sample(datatype, shape)
    message = request_with(Tensor("x", datatype, data), raw=True)
    assert len(message.raw_input_contents) == 1
    decoded = decode(pb.ModelInferRequest.FromString(message.SerializeToString()))
    assert decoded.inputs[0].datatype == datatype
    assert_same(decoded.inputs[0].data, data)


@pytest.mark.parametrize("datatype", TYPED)
def test_every_typed_datatype_round_trips_as_contents(datatype: str) -> None:
    data = sample(datatype)
    message = request_with(Tensor("x", datatype, data), raw=False)
    assert not message.raw_input_contents
    assert [f.name for f, _ in message.inputs[0].contents.ListFields()] == [CONTENTS_FIELD[datatype]]
    decoded = decode(pb.ModelInferRequest.FromString(message.SerializeToString()))
    assert_same(decoded.inputs[0].data, data)


def test_fp16_cannot_be_typed_either_way() -> None:
    with pytest.raises(Unsupported, match="FP16"):
        request_with(Tensor("half", "FP16", np.ones((1, 2), np.float16)), raw=False)
    message = pb.ModelInferRequest(model_name="m")
    message.inputs.add(name="half", datatype="FP16", shape=[1, 2]).contents.fp32_contents.extend([1.0, 2.0])
    with pytest.raises(InvalidInput, match=r"'half'.*raw_input_contents"):
        decode(message)


def test_raw_decode_keeps_the_wire_buffer() -> None:
    buffer = np.arange(6, dtype="<f4").tobytes()
    array = array_from_raw("x", "FP32", [2, 3], 6, buffer)
    assert np.shares_memory(array, np.frombuffer(buffer, np.uint8))
    assert array_to_raw(array, "FP32") == buffer


def test_request_fields_parameters_and_outputs_survive() -> None:
    request = InferRequest(
        "digits",
        [Tensor("a", "INT32", np.array([[1, -2]], np.int32), {"note": "first"})],
        model_version="3",
        id="req-7",
        outputs=[RequestedOutput("probs", {"binary_data": True})],
        parameters={"flag": True, "count": -4, "big": 2**64 - 1, "ratio": 0.25, "name": "x"},
    )
    decoded = decode(ModelInferRequestConverter.from_types(request))
    assert (decoded.model_name, decoded.model_version, decoded.id) == ("digits", "3", "req-7")
    assert decoded.parameters == request.parameters
    assert isinstance(decoded.parameters["flag"], bool)
    assert decoded.inputs[0].parameters == {"note": "first"}
    assert decoded.outputs == [RequestedOutput("probs", {"binary_data": True})]


def test_empty_version_id_and_outputs_mean_defaults() -> None:
    message = pb.ModelInferRequest(model_name="m")
    decoded = decode(message)
    assert (decoded.model_version, decoded.id, decoded.outputs, decoded.inputs) == (None, None, None, [])


@pytest.mark.parametrize("datatype", ALL_TYPES)
def test_response_round_trips_raw(datatype: str) -> None:
    data = sample(datatype)
    response = InferResponse("m", "2", [Tensor("y", datatype, data)], id="abc", parameters={"k": 1})
    message = ModelInferResponseConverter.from_types(response)
    assert list(message.outputs[0].shape) == [2, 3] and message.outputs[0].datatype == datatype
    assert len(message.raw_output_contents) == 1 and not message.outputs[0].HasField("contents")
    decoded = ModelInferResponseConverter.to_types(pb.ModelInferResponse.FromString(message.SerializeToString()))
    assert (decoded.model_name, decoded.model_version, decoded.id, decoded.parameters) == ("m", "2", "abc", {"k": 1})
    assert_same(decoded.outputs[0].data, data)


def test_response_decodes_typed_contents_from_other_servers() -> None:
    message = pb.ModelInferResponse(model_name="m", model_version="1")
    message.outputs.add(name="y", datatype="INT64", shape=[3]).contents.int64_contents.extend([1, -2, 3])
    decoded = ModelInferResponseConverter.to_types(message)
    assert_same(decoded.outputs[0].data, np.array([1, -2, 3], np.int64))


@pytest.mark.parametrize(
    ("value", "field"),
    [
        (True, "bool_param"),
        (-(2**63), "int64_param"),
        (2**63, "uint64_param"),
        (1.5, "double_param"),
        ("s", "string_param"),
    ],
)
def test_parameters_use_the_matching_oneof(value: object, field: str) -> None:
    parameter = InferParameterConverter.from_types(value, "k")
    assert parameter.WhichOneof("parameter_choice") == field
    assert InferParameterConverter.to_types(parameter, "k") == value


@pytest.mark.parametrize("value", [None, [1], {"a": 1}, 2**64, -(2**63) - 1])
def test_unrepresentable_parameters_are_refused_by_name(value: object) -> None:
    with pytest.raises(Unsupported, match="'k'"):
        InferParameterConverter.from_types(value, "k")


def test_parameter_without_a_value_is_invalid() -> None:
    message = pb.ModelInferRequest(model_name="m")
    message.parameters["empty"].CopyFrom(pb.InferParameter())
    with pytest.raises(InvalidInput, match="'empty'"):
        decode(message)


def _typed(datatype: str, shape: list[int], **contents: Any) -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name="m")
    message.inputs.add(name="x", datatype=datatype, shape=shape, contents=pb.InferTensorContents(**contents))
    return message


def _raw(datatype: str, shape: list[int], buffer: bytes) -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name="m", raw_input_contents=[buffer])
    message.inputs.add(name="x", datatype=datatype, shape=shape)
    return message


@pytest.mark.parametrize(
    ("message", "match"),
    [
        (_typed("INT8", [2], int_contents=[1, 300]), r"'x'.*INT8 range"),
        (_typed("UINT16", [1], uint_contents=[70000]), r"'x'.*UINT16 range"),
        (_typed("INT16", [1], int_contents=[-40000]), r"'x'.*INT16 range"),
        (_typed("FP32", [2], int_contents=[1, 2]), r"'x'.*fp32_contents, not int_contents"),
        (_typed("FP32", [2], fp32_contents=[1.0], fp64_contents=[1.0]), r"'x'.*not fp64_contents"),
        (_typed("FP32", [2, 2], fp32_contents=[1.0, 2.0, 3.0]), r"'x'.*3 values.*needs 4"),
        (_typed("FP32", [1, -2], fp32_contents=[1.0, 2.0]), r"'x'.*negative"),
        (_typed("FP33", [1], fp32_contents=[1.0]), r"'x'.*unknown datatype 'FP33'"),
        (_typed("FP32", [1, 4]), r"'x' has no data"),
        (_raw("FP32", [2, 2], b"\0" * 15), r"'x'.*15 bytes.*needs 16"),
        (_raw("BOOL", [2], b"\x01\x02"), r"'x'.*BOOL"),
        (_raw("BYTES", [2], b"\x05\0\0\0ab"), r"'x'.*BYTES"),
        (_raw("BYTES", [10**6], b"\x01\0\0\0a"), r"'x'.*too few"),
        (_raw("BYTES", [10**12], b"\x01\0\0\0a"), r"'x'.*over the limit"),
        (_raw("FP32", [2**40, 64], b""), r"'x'.*over the limit"),
        (_raw("INT64", [-1], b""), r"'x'.*negative"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_bad_tensors_are_invalid_input_naming_the_input(message: pb.ModelInferRequest, match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        decode(message)


def test_mixing_raw_and_typed_is_invalid() -> None:
    message = _raw("FP32", [1], np.float32(1).tobytes())
    message.inputs.add(name="y", datatype="FP32", shape=[1]).contents.fp32_contents.append(2.0)
    message.raw_input_contents.append(b"")
    with pytest.raises(InvalidInput, match=r"\['y'\].*raw_input_contents"):
        decode(message)


def test_raw_entry_count_must_match_inputs() -> None:
    message = _raw("FP32", [1], np.float32(1).tobytes())
    message.inputs.add(name="y", datatype="FP32", shape=[1])
    with pytest.raises(InvalidInput, match="raw_input_contents has 1 entries but the request has 2 inputs"):
        decode(message)


def test_input_name_is_required() -> None:
    message = _raw("FP32", [1], np.float32(1).tobytes())
    message.inputs[0].name = ""
    with pytest.raises(InvalidInput, match="an input has no name"):
        decode(message)
