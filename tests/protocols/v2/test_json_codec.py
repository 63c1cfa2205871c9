"""V2 JSON request decoding at the codec level: flat and nested data, parameters, request fields, messages."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from gateway.core.codec.limits import InputRules, TensorLimits
from gateway.core.errors import InvalidInput
from gateway.core.types import TensorSpec
from gateway.protocols.v2.json_codec import decode_request

RULES = InputRules.for_inputs(
    [TensorSpec("pixels", "FP32", (-1, 8, 8, 1)), TensorSpec("ids", "INT32", (-1,))], 4, TensorLimits(1 << 20)
)
PIXELS = np.arange(64, dtype=np.float32).reshape(1, 8, 8, 1) / 64


def body(*inputs: dict[str, object], **fields: object) -> bytes:
    return orjson.dumps({"inputs": list(inputs), **fields})


def pixels(data: object, **extra: object) -> dict[str, object]:
    return {"name": "pixels", "datatype": "FP32", "shape": [1, 8, 8, 1], "data": data, **extra}


def test_flat_and_nested_data_give_the_same_tensor() -> None:
    flat = decode_request(body(pixels(PIXELS.reshape(-1).tolist())), None, "m", None, RULES).inputs[0]
    nested = decode_request(body(pixels(PIXELS.tolist())), None, "m", None, RULES).inputs[0]
    for tensor in (flat, nested):
        assert tensor.data.dtype == np.float32 and tensor.data.shape == (1, 8, 8, 1)
        assert np.array_equal(tensor.data, PIXELS) and tensor.parameters == {}


def test_request_fields_and_parameters_are_kept() -> None:
    ids: dict[str, object] = {"name": "ids", "datatype": "INT32", "shape": [3], "data": [1, 2, 3]}
    ids["parameters"] = {"tag": "a"}
    raw = body(
        pixels(PIXELS.reshape(-1).tolist()),
        ids,
        id="req-7",
        parameters={"binary_data_output": True},
        outputs=[{"name": "probs", "parameters": {"binary_data": False}}],
    )
    request = decode_request(raw, None, "digits", "3", RULES)
    assert (request.model_name, request.model_version, request.id) == ("digits", "3", "req-7")
    assert request.parameters == {"binary_data_output": True}
    assert [(o.name, o.parameters) for o in request.outputs or []] == [("probs", {"binary_data": False})]
    assert request.inputs[1].parameters == {"tag": "a"} and request.inputs[1].data.tolist() == [1, 2, 3]
    plain = decode_request(body(pixels(PIXELS.tolist())), None, "digits", None, RULES)
    assert (plain.model_version, plain.id, plain.outputs, plain.parameters) == (None, None, None, {})


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (pixels([0.5] * 63 + [True]), "input 'pixels': data\\[63\\] is true; FP32 takes numbers"),
        (pixels([0.5] * 63 + [3.5e38]), "input 'pixels': data value 3.5e\\+38 is outside the FP32 range"),
        (pixels([0.5] * 63), "input 'pixels': shape \\[1, 8, 8, 1\\] needs 64 elements, data has 63"),
        (pixels([[0.5] * 8] * 7), "input 'pixels': shape \\[1, 8, 8, 1\\] needs 64 elements, data has 56"),
        (pixels([[0.5] * 8] * 7 + [[0.5] * 7 + [None]]), "input 'pixels': data\\[63\\] is null; FP32 takes numbers"),
        ({"name": "ids", "datatype": "INT32", "shape": [2], "data": [1, 2**31]}, "outside the INT32 range"),
        ({"name": "ids", "datatype": "INT32", "shape": [-1, 1.5], "data": []}, "shape must be a list of integers"),
        ({"name": "ids", "datatype": "INT32", "shape": [-2], "data": []}, "shape \\[-2\\] has a negative dimension"),
        ({"name": "ids", "datatype": "FP32", "shape": [1], "data": [1]}, "FP32 does not match the model.s INT32"),
        ({"name": "ids", "datatype": "FP8", "shape": [1], "data": [1]}, "unknown datatype 'FP8'"),
        ({"name": "ids", "datatype": "INT32", "shape": [1], "parameters": 3}, "parameters must be an object"),
        ({"name": "ids", "datatype": "INT32", "shape": [1]}, "needs 'data' or parameters.binary_data_size"),
    ],
)
def test_bad_inputs_get_the_same_messages(entry: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        decode_request(body(entry), None, "m", None, RULES)
