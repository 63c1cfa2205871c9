import numpy as np
import pytest

from gateway.core.codec.values import array_from_field, array_from_json, array_to_json, decode_b64, nested_shape
from gateway.core.errors import InvalidInput


def test_numbers_and_nesting() -> None:
    assert array_from_json("x", "FP32", [[1, 2.5], [3, 4]]).tolist() == [[1, 2.5], [3, 4]]
    assert array_from_json("x", "INT8", [-128, 127]).dtype == np.int8
    assert array_from_json("x", "UINT64", [2**64 - 1]).tolist() == [2**64 - 1]
    assert array_from_json("x", "BOOL", [True, False]).tolist() == [True, False]
    assert array_from_json("x", "FP64", 2.5).shape == ()
    assert nested_shape("x", [[1, 2, 3], [4, 5, 6]]) == (2, 3)


@pytest.mark.parametrize(
    ("datatype", "data", "message"),
    [
        ("FP32", [1.0, None], "data\\[1\\] is null; FP32 takes numbers"),
        ("FP32", [1.0, "1.5"], "data\\[1\\] is a string; FP32 takes numbers"),
        ("FP32", [1.0, True], "data\\[1\\] is true; FP32 takes numbers"),
        ("FP32", [True, False], "data\\[0\\] is true; FP32 takes numbers"),
        ("FP32", [1e300], "value 1e\\+300 is outside the FP32 range"),
        ("FP16", [70000.0], "outside the FP16 range"),
        ("INT8", [300], "value 300 is outside the INT8 range \\[-128, 127\\]"),
        ("UINT8", [-1], "outside the UINT8 range"),
        ("UINT64", [2**64], "outside the UINT64 range"),
        ("INT64", [-(2**63) - 1], "outside the INT64 range"),
        ("INT32", [1, 2.5], "data\\[1\\] is a number with a fraction; INT32 takes integers"),
        ("BOOL", [1, 0], "data\\[0\\] is the number 1; BOOL takes true/false"),
        ("FP32", [[1, 2], [3]], "ragged"),
        ("FP32", [[1, 2], 3], "ragged"),
        ("FP32", [{"a": 1}], "object"),
        ("BYTES", ["a", 1], "data\\[1\\] is the number 1; BYTES takes strings"),
        ("BYTES", [None], "data\\[0\\] is null; BYTES takes strings"),
        ("BYTES", [["a"], ["b", "c"]], "ragged"),
    ],
)
def test_strict_values_name_the_input_and_the_rule(datatype: str, data: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as info:
        array_from_json("x", datatype, data)
    assert info.value.message.startswith("input 'x': ")


def test_nan_and_infinity_are_refused_for_inputs_but_kept_for_outputs() -> None:
    with pytest.raises(InvalidInput, match="NaN or Infinity"):
        array_from_json("x", "FP64", [float("nan")])
    assert np.isinf(array_from_json("x", "FP64", [float("inf")], finite=False)).all()


def test_b64_only_where_allowed() -> None:
    assert array_from_json("s", "BYTES", [{"b64": "aGk="}], b64=True).tolist() == [b"hi"]
    with pytest.raises(InvalidInput, match="object"):
        array_from_json("s", "BYTES", [{"b64": "aGk="}])
    with pytest.raises(InvalidInput, match="not valid base64"):
        decode_b64("s", "a$b", "data[0]")


def test_typed_fields_fill_and_narrow() -> None:
    assert array_from_field("x", "FP32", [1.5], np.dtype(np.float32), 4, "float_val", fill=True).tolist() == [1.5] * 4
    assert array_from_field("x", "INT8", [-5, 7], np.dtype(np.int32), 2, "int_val").dtype == np.int8
    with pytest.raises(InvalidInput, match="has 1 values; the shape needs 4"):
        array_from_field("x", "FP32", [1.5], np.dtype(np.float32), 4, "float_val")
    with pytest.raises(InvalidInput, match="outside the INT8 range"):
        array_from_field("x", "INT8", [300], np.dtype(np.int32), 1, "int_val")


def test_to_json_fp16_bytes_and_nested_b64() -> None:
    assert array_to_json("y", np.array([1.5], np.float16), "FP16").dtype == np.float32
    assert array_to_json("y", np.array([b"hi"], dtype=object), "BYTES") == ["hi"]
    assert array_to_json("y", np.array([[b"\xff"]], dtype=object), "BYTES", nested=True) == [[{"b64": "/w=="}]]
    with pytest.raises(InvalidInput, match="non-UTF-8 bytes"):
        array_to_json("y", np.array([b"\xff"], dtype=object), "BYTES")
