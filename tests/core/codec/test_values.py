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


# -- the fast path for flat lists (issue 13): same verdicts and messages as the checked path ------------

FP32_MAX = float(np.finfo(np.float32).max)


@pytest.mark.parametrize(
    ("datatype", "data", "message"),
    [
        ("FP32", [0.5] * 63 + [True], "data\\[63\\] is true; FP32 takes numbers"),
        ("FP64", [False] + [0.5] * 10, "data\\[0\\] is false; FP64 takes numbers"),
        ("INT32", [1, True], "data\\[1\\] is true; INT32 takes integers"),
        ("INT64", [1, 2.0], "data\\[1\\] is a number with a fraction; INT64 takes integers"),
        ("BOOL", [True, 1], "data\\[1\\] is the number 1; BOOL takes true/false"),
        ("INT32", [0, 2**31], "value 2147483648 is outside the INT32 range \\[-2147483648, 2147483647\\]"),
        ("INT32", [-(2**31) - 1], "value -2147483649 is outside the INT32 range"),
        ("UINT8", [255, 256], "value 256 is outside the UINT8 range \\[0, 255\\]"),
        ("FP32", [0.5, 3.5e38], "value 3.5e\\+38 is outside the FP32 range \\(±3.40282e\\+38\\)"),
        ("FP32", [-3.5e38, 0.5], "value -3.5e\\+38 is outside the FP32 range"),
        ("FP32", [1, 2**128], "value 3.40282e\\+38 is outside the FP32 range"),
        ("FP16", [1.0, 65520.0], "value 65520 is outside the FP16 range \\(±65504\\)"),
        ("FP32", [0.5, float("nan")], "holds NaN or Infinity, which FP32 data may not carry in JSON"),
        ("FP64", [0.5, float("nan")], "holds NaN or Infinity, which FP64 data may not carry in JSON"),
        ("FP64", [float("inf"), 0.5], "value inf is outside the FP64 range"),
        ("FP32", [0.5, float("-inf")], "value -inf is outside the FP32 range"),
        ("FP32", [0.5, None], "data\\[1\\] is null; FP32 takes numbers"),
        ("FP32", [0.5, [1.0]], "ragged"),
    ],
)
def test_flat_lists_keep_every_rule_and_message(datatype: str, data: list[object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        array_from_json("x", datatype, data)


def test_flat_lists_at_the_edges_of_the_ranges_are_accepted_exactly() -> None:
    below_overflow = 2.0**128 - 2.0**104  # rounds to the FP32 maximum, not to infinity
    assert array_from_json("x", "FP32", [FP32_MAX, -below_overflow]).tolist() == [FP32_MAX, -FP32_MAX]
    assert array_from_json("x", "FP16", [65504.0, 65519.0]).tolist() == [65504.0, 65504.0]
    assert array_from_json("x", "FP64", [1e308, -1e308]).tolist() == [1e308, -1e308]
    assert array_from_json("x", "INT32", [2**31 - 1, -(2**31)]).tolist() == [2**31 - 1, -(2**31)]
    assert array_from_json("x", "UINT64", [2**64 - 1, 0]).tolist() == [2**64 - 1, 0]
    assert array_from_json("x", "FP64", [2**53 + 1]).tolist() == [float(2**53 + 1)]


def test_flat_lists_mixed_ints_and_floats_convert_like_nested_ones() -> None:
    flat = array_from_json("x", "FP32", [0, 0.5, 1, 2.25])
    nested = array_from_json("x", "FP32", [[0, 0.5], [1, 2.25]])
    assert flat.dtype == nested.dtype == np.float32
    assert flat.tolist() == nested.reshape(-1).tolist() == [0.0, 0.5, 1.0, 2.25]
    assert array_from_json("x", "FP32", [1, 2, 3]).dtype == np.float32


def test_empty_flat_lists_keep_the_datatype() -> None:
    for datatype, dtype in (("FP32", np.float32), ("INT8", np.int8), ("BOOL", np.bool_), ("UINT64", np.uint64)):
        array = array_from_json("x", datatype, [])
        assert (array.shape, array.dtype) == ((0,), np.dtype(dtype))
    assert array_from_json("x", "BYTES", []).shape == (0,)


def test_outputs_may_carry_nan_on_the_flat_path_too() -> None:
    assert np.isnan(array_from_json("x", "FP32", [0.5, float("nan")], finite=False)[1])


def test_bytes_are_not_numbers() -> None:
    assert array_from_json("s", "BYTES", ["a", "bc"]).tolist() == [b"a", b"bc"]
    with pytest.raises(InvalidInput, match="data\\[0\\] is a number with a fraction; BYTES takes strings"):
        array_from_json("s", "BYTES", [1.5, "a"])


@pytest.mark.parametrize(
    ("datatype", "data", "message"),
    [
        ("FP32", [[1.0, 2.0], [3.0]], "ragged"),
        ("FP32", [[1.0, 2.0], [3.0, 4.0, 5.0]], "ragged"),
        ("FP32", [[1.0, 2.0], "ab"], "ragged"),
        ("FP32", [[1.0, 2.0], [3.0, [4.0]]], "ragged"),
        ("FP32", [[1.0, 2.0], [3.0, True]], "data\\[3\\] is true; FP32 takes numbers"),
        ("FP32", [[[0.5], [0.5]], [[0.5], [3.5e38]]], "value 3.5e\\+38 is outside the FP32 range"),
        ("FP32", [[0.5, float("nan")]], "holds NaN or Infinity"),
        ("INT32", [[1, 2], [3, 2**31]], "value 2147483648 is outside the INT32 range"),
        ("INT8", [[1], [2.5]], "data\\[1\\] is a number with a fraction; INT8 takes integers"),
    ],
)
def test_nested_lists_keep_every_rule_and_message(datatype: str, data: list[object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        array_from_json("x", datatype, data)


def test_regular_nesting_converts_like_flat_data() -> None:
    values = np.arange(24, dtype=np.float64).reshape(2, 3, 4) / 8
    nested = array_from_json("x", "FP32", values.tolist())
    assert (nested.shape, nested.dtype) == ((2, 3, 4), np.dtype(np.float32))
    assert nested.tolist() == array_from_json("x", "FP32", values.reshape(-1).tolist()).reshape(2, 3, 4).tolist()
    assert array_from_json("x", "INT16", [[1, -2], [3, 4]]).tolist() == [[1, -2], [3, 4]]
    assert array_from_json("x", "FP64", [[], []]).shape == (2, 0)
    assert array_from_json("x", "BYTES", [["a"], ["b"]]).tolist() == [[b"a"], [b"b"]]
