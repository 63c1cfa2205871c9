"""Hypothesis fuzz of the request decoders: V2 JSON and binary (``v2/json_codec.decode_request``),
TF Serving REST (``tfserving/json_codec``) and V2 gRPC (``v2/grpc_codec``), from random bytes,
mutated JSON and structured near-valid documents and messages. Whatever comes in, the only
exception that may escape is :class:`InvalidInput` (a 400 / INVALID_ARGUMENT in our words),
and its message is never a library's.

Bounded (a fixed number of examples) and deterministic (``derandomize``, no example
database), so it takes seconds and never flakes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.core.codec.limits import InputRules, TensorLimits
from gateway.core.errors import InvalidInput
from gateway.core.types import TensorSpec
from gateway.protocols.tfserving.json_codec import decode_predict, parse_predict_body
from gateway.protocols.v2.grpc_codec import ModelInferRequestConverter
from gateway.protocols.v2.json_codec import decode_raw_single_input, decode_request
from gateway.protos import open_inference_grpc_pb2 as pb

FUZZ = settings(
    max_examples=200, derandomize=True, database=None, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)  # fmt: skip

SPECS = (
    TensorSpec("x", "FP32", (-1, 4)),
    TensorSpec("s", "BYTES", (-1,)),
    TensorSpec("b", "BOOL", (2,)),
    TensorSpec("i", "INT8", (-1, 2)),
    TensorSpec("u", "UINT64", (-1,)),
    TensorSpec("h", "FP16", (-1, 2)),
)
RULES = InputRules.for_inputs(SPECS, max_batch_size=8, limits=TensorLimits(max_bytes=4096))
SINGLE = InputRules.for_inputs(SPECS[:1], max_batch_size=8, limits=TensorLimits(max_bytes=4096))
DATATYPES = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
             "FP16", "FP32", "FP64", "BYTES"]  # fmt: skip
LEAKS = (
    "recursion", "surrogate", "inhomogeneous", "setting an array element", "Traceback", "orjson", "numpy",
    "<class", "Error:", "object has no attribute", "unhashable", "not subscriptable", "invalid literal",
)  # fmt: skip


def only_invalid_input(decode: Callable[[], object]) -> None:
    """Run a decoder: it may return or raise InvalidInput in our words, nothing else."""
    try:
        decode()
    except InvalidInput as exc:
        assert exc.message and not any(leak in exc.message for leak in LEAKS), exc.message


# -- strategies -------------------------------------------------------------------------

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8),
    st.sampled_from([1e300, -1e300, 2**64, -(2**63) - 1, 255, 256, -129, 65504.0, 70000.0]),
)  # fmt: skip
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=40,
)  # fmt: skip
names = st.sampled_from(["x", "s", "b", "i", "u", "h", "", "nope", "X"]) | json_values
shapes = st.lists(st.integers(min_value=-3, max_value=2**62) | st.sampled_from([0, 1, 2, 4, 8]), max_size=4)
small_shapes = st.lists(st.integers(min_value=-1, max_value=9), min_size=0, max_size=3)


@st.composite
def tensors(draw: st.DrawFn) -> dict[str, Any]:
    """An input entry: usually near-valid (a real name, datatype and a small shape), sometimes anything."""
    entry: dict[str, Any] = {
        "name": draw(names),
        "datatype": draw(st.sampled_from(DATATYPES) | json_values),
        "shape": draw(small_shapes | shapes | json_values),
    }
    shape = entry["shape"]
    if isinstance(shape, list) and all(type(d) is int and 0 <= d < 10 for d in shape) and draw(st.booleans()):
        count = math.prod(shape)
        entry["data"] = draw(st.lists(scalars, min_size=count, max_size=count))
    elif draw(st.booleans()):
        entry["data"] = draw(json_values)
    if draw(st.booleans()):
        entry["parameters"] = draw(
            st.fixed_dictionaries({"binary_data_size": st.integers(min_value=-2, max_value=64) | json_values})
            | st.dictionaries(st.text(max_size=5), json_values, max_size=3)
        )
    return entry


v2_docs = st.fixed_dictionaries(
    {"inputs": st.lists(tensors(), max_size=3) | json_values},
    optional={"id": json_values, "outputs": json_values, "parameters": json_values},
)
tfs_docs = st.one_of(
    st.fixed_dictionaries({"instances": json_values}, optional={"signature_name": json_values}),
    st.fixed_dictionaries({"inputs": json_values | st.dictionaries(names.filter(lambda n: isinstance(n, str)),
                                                                      json_values, max_size=3)}),
    st.fixed_dictionaries({"instances": st.lists(st.lists(scalars, min_size=4, max_size=4), max_size=3)}),
    json_values,
)  # fmt: skip


@st.composite
def mutated(draw: st.DrawFn, docs: st.SearchStrategy[Any]) -> bytes:
    """A document serialised, then maybe cut, flipped, deepened or given a lone surrogate."""
    raw = json.dumps(draw(docs)).encode()  # the stdlib writes integers past 64 bits too
    how = draw(st.sampled_from(["as-is", "cut", "flip", "surrogate", "deep", "dup-key"]))
    if how == "cut" and raw:
        return raw[: draw(st.integers(min_value=0, max_value=len(raw) - 1))]
    if how == "flip" and raw:
        at = draw(st.integers(min_value=0, max_value=len(raw) - 1))
        return raw[:at] + bytes([draw(st.integers(min_value=0, max_value=255))]) + raw[at + 1 :]
    if how == "surrogate":
        return raw.replace(b'"', b'"\\ud800', 1)
    if how == "deep":
        depth = draw(st.sampled_from([500, 1023, 1024, 1025, 5000]))
        return raw.replace(b"[", b"[" * depth, 1) + b"]" * (depth - 1) if b"[" in raw else b"[" * depth
    if how == "dup-key":
        return raw.replace(b"{", b'{"inputs":1,', 1)
    return raw


# -- V2 REST (JSON and binary) -----------------------------------------------------------


@FUZZ
@given(st.binary(max_size=512), st.none() | st.integers(min_value=-5, max_value=600))
def test_v2_decoder_random_bytes(body: bytes, header_length: int | None) -> None:
    only_invalid_input(lambda: decode_request(body, header_length, "m", None, RULES))


@FUZZ
@given(mutated(v2_docs))
def test_v2_decoder_json(body: bytes) -> None:
    only_invalid_input(lambda: decode_request(body, None, "m", None, RULES))


@FUZZ
@given(mutated(v2_docs), st.binary(max_size=128))
def test_v2_decoder_binary_extension(header: bytes, tail: bytes) -> None:
    only_invalid_input(lambda: decode_request(header + tail, len(header), "m", "1", RULES))


@FUZZ
@given(st.binary(max_size=256))
def test_v2_raw_single_input(body: bytes) -> None:
    only_invalid_input(lambda: decode_raw_single_input(body, "m", None, SINGLE))
    only_invalid_input(lambda: decode_raw_single_input(body, "m", None, RULES))


# -- TF Serving REST ---------------------------------------------------------------------


def _tfs(body: bytes, rules: InputRules) -> object:
    return decode_predict(parse_predict_body(body), rules)


@FUZZ
@given(st.binary(max_size=512))
def test_tfserving_decoder_random_bytes(body: bytes) -> None:
    only_invalid_input(lambda: _tfs(body, RULES))


@FUZZ
@given(mutated(tfs_docs), st.booleans())
def test_tfserving_decoder_json(body: bytes, single: bool) -> None:
    only_invalid_input(lambda: _tfs(body, SINGLE if single else RULES))


# -- V2 gRPC -----------------------------------------------------------------------------

contents_fields = {
    "bool_contents": st.lists(st.booleans(), max_size=10),
    "int_contents": st.lists(st.integers(min_value=-(2**31), max_value=2**31 - 1), max_size=10),
    "int64_contents": st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=10),
    "uint_contents": st.lists(st.integers(min_value=0, max_value=2**32 - 1), max_size=10),
    "uint64_contents": st.lists(st.integers(min_value=0, max_value=2**64 - 1), max_size=10),
    "fp32_contents": st.lists(st.floats(width=32), max_size=10),
    "fp64_contents": st.lists(st.floats(), max_size=10),
    "bytes_contents": st.lists(st.binary(max_size=8), max_size=10),
}


@st.composite
def infer_requests(draw: st.DrawFn) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="m")
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        name = draw(st.sampled_from(["x", "s", "b", "i", "u", "h", "", "nope"]))
        datatype = draw(st.sampled_from([*DATATYPES, "", "FP8", "fp32"]))
        shape = draw(st.lists(st.integers(min_value=-3, max_value=2**62) | st.integers(0, 9), max_size=4))
        entry = request.inputs.add(name=name, datatype=datatype, shape=shape)
        for field in draw(st.lists(st.sampled_from(sorted(contents_fields)), max_size=2, unique=True)):
            getattr(entry.contents, field).extend(draw(contents_fields[field]))
    raw = draw(st.lists(st.binary(max_size=64), max_size=4))
    request.raw_input_contents.extend(raw)
    for name in draw(st.lists(st.sampled_from(["probs", "", "y"]), max_size=2)):
        request.outputs.add(name=name)
    return request


@FUZZ
@given(infer_requests())
def test_grpc_decoder_messages(request: pb.ModelInferRequest) -> None:
    only_invalid_input(lambda: ModelInferRequestConverter.to_types(request, RULES))


@FUZZ
@given(st.binary(max_size=512))
def test_grpc_decoder_random_bytes(raw: bytes) -> None:
    """Bytes that parse as a ModelInferRequest at all (the rest is the interceptor's INVALID_ARGUMENT)."""
    try:
        request = pb.ModelInferRequest.FromString(raw)
    except Exception:  # not a message: answered before decoding (tests/e2e/test_error_words.py)
        return
    only_invalid_input(lambda: ModelInferRequestConverter.to_types(request, RULES))
