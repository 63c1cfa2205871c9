"""TF Serving codecs: TensorProto <-> numpy and the REST predict JSON, with no TensorFlow involved."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gateway.core.codec.datatypes import V2_TO_NUMPY
from gateway.core.codec.limits import DEFAULT_LIMITS, InputRules
from gateway.core.errors import InvalidInput
from gateway.core.types import Tensor, TensorSpec
from gateway.protocols.tfserving.json_codec import JsonFormat, decode_predict, encode_predict, parse_predict_body
from gateway.protos.tfserving import generate
from gateway.protos.tfserving.tensorflow.core.framework import tensor_pb2, types_pb2
from gateway.tensorproto import TF_DTYPE, shape_proto, tensor_from_proto, tensor_to_proto

PIXELS = InputRules.for_inputs([TensorSpec("pixels", "FP32", (-1, 4))], 0, DEFAULT_LIMITS)
TWO = InputRules.for_inputs(
    [TensorSpec("image", "FP32", (-1, 2)), TensorSpec("tag", "BYTES", (-1,))], 0, DEFAULT_LIMITS
)


def sample(datatype: str) -> np.ndarray:
    if datatype == "BYTES":
        return np.array([[b"a", b"\xff\x00"], [b"", b"long value"]], dtype=object)
    if datatype == "BOOL":
        return np.array([[True, False], [False, True]])
    dtype = V2_TO_NUMPY[datatype]
    if dtype.kind == "f":
        return np.array([[0.5, -1.25], [np.inf, 3.0]], dtype=dtype)
    info = np.iinfo(dtype.name)
    return np.array([[info.min, info.max], [0, 1]], dtype=dtype)


# -- TensorProto -------------------------------------------------------------------------


@pytest.mark.parametrize("datatype", sorted(TF_DTYPE))
def test_every_datatype_round_trips_through_typed_fields(datatype: str) -> None:
    data = sample(datatype)
    proto = tensor_to_proto(Tensor("x", datatype, data))
    assert proto.dtype == TF_DTYPE[datatype] and not proto.tensor_content
    back = tensor_from_proto("x", tensor_pb2.TensorProto.FromString(proto.SerializeToString()))
    assert back.datatype == datatype and back.shape == (2, 2)
    np.testing.assert_array_equal(back.data, data)


def test_half_values_are_bit_patterns() -> None:
    proto = tensor_to_proto(Tensor("h", "FP16", np.array([1.0, -2.0], np.float16)))
    assert list(proto.half_val) == [0x3C00, 0xC000]


@pytest.mark.parametrize("datatype", [d for d in sorted(TF_DTYPE) if d != "BYTES"])
def test_tensor_content_is_read_as_little_endian_bytes(datatype: str) -> None:
    data = sample(datatype)
    proto = tensor_pb2.TensorProto(
        dtype=TF_DTYPE[datatype],
        tensor_shape=shape_proto(data.shape),
        tensor_content=data.astype(data.dtype.newbyteorder("<")).tobytes(),
    )
    np.testing.assert_array_equal(tensor_from_proto("x", proto).data, data)


def test_a_single_value_fills_the_shape_as_in_tensorflow() -> None:
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_shape=shape_proto((2, 3)), float_val=[7.0])
    np.testing.assert_array_equal(tensor_from_proto("x", proto).data, np.full((2, 3), 7.0, np.float32))
    scalar = tensor_pb2.TensorProto(dtype=types_pb2.DT_INT64, int64_val=[5])
    assert tensor_from_proto("s", scalar).data.shape == ()


@pytest.mark.parametrize(
    ("proto", "message"),
    [
        (tensor_pb2.TensorProto(dtype=types_pb2.DT_COMPLEX128), "dtype DT_COMPLEX128 is not supported"),
        (
            tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[1, 2, 3], tensor_shape=shape_proto((2,))),
            "float_val has 3 values; the shape needs 2",
        ),
        (
            tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_content=b"\0" * 6, tensor_shape=shape_proto((2,))),
            "tensor_content has 6 bytes",
        ),
        (
            tensor_pb2.TensorProto(dtype=types_pb2.DT_INT8, int_val=[1, 128], tensor_shape=shape_proto((2,))),
            "outside the INT8 range",
        ),
        (tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_shape=shape_proto((-1, 2))), "negative dimension"),
        (tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_shape={"unknown_rank": True}), "unknown_rank"),
    ],
)
def test_bad_tensor_protos_name_the_input(proto: tensor_pb2.TensorProto, message: str) -> None:
    with pytest.raises(InvalidInput, match="input 'pixels'") as info:
        tensor_from_proto("pixels", proto)
    assert message in info.value.message


# -- REST request ------------------------------------------------------------------------


def test_row_format_stacks_instances_into_a_batch() -> None:
    (tensor,), fmt = decode_predict({"instances": [[1, 2, 3, 4], [5, 6, 7, 8]]}, PIXELS)
    assert fmt is JsonFormat.ROW and tensor.datatype == "FP32" and tensor.data.dtype == np.float32
    assert tensor.data.tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]


def test_row_format_objects_name_several_inputs_including_b64() -> None:
    image = base64.b64encode(b"\x89PNG").decode()
    doc = {"instances": [{"image": [1, 2], "tag": {"b64": image}}, {"image": [3, 4], "tag": "plain"}]}
    tensors, _ = decode_predict(doc, TWO)
    by_name = {t.name: t.data for t in tensors}
    assert by_name["image"].tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert by_name["tag"].tolist() == [b"\x89PNG", b"plain"]


def test_columnar_format_takes_a_tensor_or_named_tensors() -> None:
    (single,), fmt = decode_predict({"inputs": [[1, 2, 3, 4]], "signature_name": ""}, PIXELS)
    assert fmt is JsonFormat.COLUMNAR and single.shape == (1, 4)
    tensors, _ = decode_predict({"inputs": {"tag": [{"b64": "AAE="}], "image": [[1, 2]]}}, TWO)
    assert {t.name: t.shape for t in tensors} == {"tag": (1,), "image": (1, 2)}
    assert next(t for t in tensors if t.name == "tag").data[0] == b"\x00\x01"


def test_a_bare_b64_value_is_a_value_not_a_named_object() -> None:
    spec = InputRules.for_inputs([TensorSpec("raw", "BYTES", (-1,))], 0, DEFAULT_LIMITS)
    (tensor,), _ = decode_predict({"instances": [{"b64": "AQI="}, {"b64": "Aw=="}]}, spec)
    assert tensor.data.tolist() == [b"\x01\x02", b"\x03"]


def test_nan_and_infinity_tokens_are_refused_as_in_every_json_input() -> None:
    with pytest.raises(InvalidInput, match="not valid JSON"):
        parse_predict_body(b'{"instances": [[NaN, Infinity, -Infinity, 1]]}')


@pytest.mark.parametrize(
    ("doc", "specs", "message"),
    [
        ({"instances": [[1]], "inputs": [[1]]}, PIXELS, "both 'instances' and 'inputs'"),
        ({}, PIXELS, "needs 'instances'"),
        ({"instances": [[1]], "signature_name": 3}, PIXELS, "'signature_name' must be a string"),
        ({"instances": [[1]], "signature_name": "predict"}, PIXELS, 'Serving signature name: "predict" not found'),
        ({"instances": {"pixels": [1]}}, PIXELS, "'instances' must be a non-empty list"),
        ({"instances": [[1, 2, 3, 4], [3]]}, PIXELS, "ragged"),
        ({"instances": [[1, 2], [3]]}, PIXELS, "shape [2, 2] does not match the model's [-1, 4]"),
        ({"instances": [[True, False, True, True]]}, PIXELS, "instances[0] is true; FP32 takes numbers"),
        ({"instances": [{"b64": "AA=="}]}, PIXELS, "shape [1] does not match"),
        ({"instances": [[1, 2]]}, TWO, "must name them"),
        ({"instances": [{"image": [1, 2]}]}, TWO, "every instance needs exactly ['image', 'tag']"),
        ({"inputs": {"tag": ["a", ["b", "c"]]}}, TWO, "ragged"),
        ({"inputs": {"tag": [1]}}, TWO, 'BYTES takes strings or {"b64": ...} objects'),
        ({"inputs": {"tag": [{"b64": 5}]}}, TWO, "a b64 value must be a string"),
        ({"inputs": {"tag": [{"b64": "***"}]}}, TWO, "not valid base64"),
        ({"inputs": {"nope": [1]}}, TWO, "unknown input 'nope'"),
    ],
)
def test_bad_requests_are_invalid_input(doc: dict[str, object], specs: InputRules, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        decode_predict(doc, specs)
    assert message in info.value.message


@pytest.mark.parametrize("body", [b"{", b"\xff\xfe", b"[1]", b'"text"', b"[" * 100_000])
def test_unparseable_bodies_are_invalid_input(body: bytes) -> None:
    with pytest.raises(InvalidInput):
        parse_predict_body(body)


# -- REST response -----------------------------------------------------------------------


def test_one_output_is_unnamed_in_both_formats() -> None:
    probs = Tensor("probs", "FP32", np.array([[0.25, 0.75], [1.0, 0.0]], np.float32))
    assert json.loads(encode_predict([probs], JsonFormat.ROW)) == {"predictions": [[0.25, 0.75], [1.0, 0.0]]}
    assert json.loads(encode_predict([probs], JsonFormat.COLUMNAR)) == {"outputs": [[0.25, 0.75], [1.0, 0.0]]}


def test_several_outputs_are_rows_of_objects_or_an_object_of_columns() -> None:
    scores = Tensor("scores", "FP16", np.array([0.5, 1.5], np.float16))
    names = Tensor("names", "BYTES", np.array([b"cat", b"dog"], dtype=object))
    assert json.loads(encode_predict([scores, names], JsonFormat.ROW)) == {
        "predictions": [{"scores": 0.5, "names": "cat"}, {"scores": 1.5, "names": "dog"}]
    }
    assert json.loads(encode_predict([scores, names], JsonFormat.COLUMNAR)) == {
        "outputs": {"scores": [0.5, 1.5], "names": ["cat", "dog"]}
    }


def test_binary_outputs_are_b64_objects() -> None:
    named = Tensor("image_bytes", "BYTES", np.array([b"text"], dtype=object))
    raw = Tensor("raw", "BYTES", np.array([b"\xff\x00"], dtype=object))
    doc = json.loads(encode_predict([named, raw], JsonFormat.COLUMNAR))
    assert doc == {"outputs": {"image_bytes": [{"b64": "dGV4dA=="}], "raw": [{"b64": "/wA="}]}}


def test_rows_need_a_shared_batch_dimension() -> None:
    a = Tensor("a", "INT32", np.zeros((2, 1), np.int32))
    b = Tensor("b", "INT32", np.zeros((3,), np.int32))
    with pytest.raises(InvalidInput, match="columnar format"):
        encode_predict([a, b], JsonFormat.ROW)
    assert json.loads(encode_predict([a, b], JsonFormat.COLUMNAR)) == {"outputs": {"a": [[0], [0]], "b": [0, 0, 0]}}


def test_non_finite_outputs_are_written_as_tokens() -> None:
    out = Tensor("y", "FP64", np.array([np.nan, -np.inf, 1.0]))
    assert encode_predict([out], JsonFormat.COLUMNAR) == b'{"outputs":[NaN,-Infinity,1.0]}'


# -- the generated modules ---------------------------------------------------------------


def test_gateway_tf_serving_modules_do_not_import_tensorflow() -> None:
    code = (
        "import sys, gateway.protocols.tfserving.grpc_api, gateway.protocols.tfserving.rest_api; "
        "loaded = sorted(m for m in sys.modules if m == 'tensorflow' or m.startswith('tensorflow.')); "
        "print(loaded); sys.exit(1 if loaded else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_committed_modules_regenerate_identically(tmp_path: Path) -> None:
    written = generate.generate(generate.DESCRIPTORS, tmp_path)
    assert written, "protoc wrote nothing"
    for path in written:
        committed = generate.HERE / path.relative_to(tmp_path)
        assert committed.read_text(encoding="utf-8") == path.read_text(encoding="utf-8"), committed
