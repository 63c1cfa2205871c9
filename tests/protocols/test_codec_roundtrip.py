"""Property: random valid tensors of every datatype round-trip identically through every wire codec.

The codecs are the V2 JSON and binary forms, V2 gRPC raw and typed contents, TF Serving's REST
JSON and its TensorProto (typed fields and tensor_content), and the worker frame. Every one of
them is built on the core codec; a difference between them would show up here as a tensor that
comes back changed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from gateway.backends.worker import wire
from gateway.core.codec.datatypes import V2_TO_NUMPY
from gateway.core.codec.limits import DEFAULT_LIMITS, InputRules
from gateway.core.types import InferRequest, Tensor, TensorSpec
from gateway.protocols.tfserving.json_codec import JsonFormat, decode_predict, encode_predict
from gateway.protocols.v2.grpc_codec import CONTENTS_FIELD, ModelInferRequestConverter
from gateway.protocols.v2.json_codec import decode_request, encode_request
from gateway.protos import open_inference_grpc_pb2 as pb
from gateway.protos.tfserving.tensorflow.core.framework import tensor_pb2
from gateway.tensorproto import tensor_from_proto, tensor_to_content_proto, tensor_to_proto

SHAPES = hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=4)


@st.composite
def tensors(draw: st.DrawFn) -> Tensor:
    datatype = draw(st.sampled_from(sorted(V2_TO_NUMPY)))
    shape = draw(SHAPES)
    if datatype == "BYTES":
        count = int(np.prod(shape))
        items = draw(st.lists(st.binary(max_size=8), min_size=count, max_size=count))
        data = np.empty(count, dtype=object)
        data[:] = items
        return Tensor("t", datatype, data.reshape(shape))
    dtype = V2_TO_NUMPY[datatype]
    elements = st.floats(width=dtype.itemsize * 8, allow_nan=False, allow_infinity=False) if dtype.kind == "f" else None
    return Tensor("t", datatype, draw(hnp.arrays(dtype, shape, elements=elements)))


def rules(tensor: Tensor) -> InputRules:
    spec = TensorSpec(tensor.name, tensor.datatype, tuple(-1 for _ in tensor.shape))
    return InputRules.for_inputs([spec], 0, DEFAULT_LIMITS)


def utf8(tensor: Tensor) -> bool:
    """JSON carries BYTES as text in V2, so only UTF-8 elements can round-trip there."""
    if tensor.datatype != "BYTES":
        return True
    try:
        [bytes(v).decode("utf-8") for v in tensor.data.reshape(-1)]
    except UnicodeDecodeError:
        return False
    return True


def same(back: np.ndarray, tensor: Tensor) -> None:
    assert back.shape == tensor.data.shape, (back.shape, tensor.data.shape)
    if tensor.datatype == "BYTES":
        assert [bytes(v) for v in back.reshape(-1)] == [bytes(v) for v in tensor.data.reshape(-1)]
    else:
        assert back.dtype == tensor.data.dtype
        np.testing.assert_array_equal(back, tensor.data)


def v2(tensor: Tensor, binary: bool) -> np.ndarray:
    body, header = encode_request(InferRequest("m", [tensor]), binary=binary)
    return decode_request(body, header, "m", None, rules(tensor)).inputs[0].data


def v2_grpc(tensor: Tensor, raw: bool) -> np.ndarray:
    message = ModelInferRequestConverter.from_types(InferRequest("m", [tensor]), raw=raw)
    message = pb.ModelInferRequest.FromString(message.SerializeToString())
    return ModelInferRequestConverter.to_types(message, rules(tensor)).inputs[0].data


def tfs_rest(tensor: Tensor) -> np.ndarray:
    # The response encoder writes what a TF Serving client would send back as a request ("inputs").
    doc: dict[str, Any] = orjson.loads(encode_predict([tensor], JsonFormat.COLUMNAR))
    return decode_predict({"inputs": doc["outputs"]}, rules(tensor))[0][0].data


def tfs_proto(tensor: Tensor, content: bool) -> np.ndarray:
    proto = tensor_to_content_proto(tensor.data, tensor.datatype) if content else tensor_to_proto(tensor)
    proto = tensor_pb2.TensorProto.FromString(proto.SerializeToString())
    return tensor_from_proto(tensor.name, proto, rules(tensor)).data


def worker_frame(tensor: Tensor) -> np.ndarray:
    frame = wire.encode_frame({"id": 1}, {tensor.name: tensor.data})
    return wire.decode_body(frame[wire.PREFIX_SIZE :])[1][tensor.name]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tensors())
def test_every_codec_round_trips_every_datatype(tensor: Tensor) -> None:
    same(v2(tensor, binary=True), tensor)
    same(v2_grpc(tensor, raw=True), tensor)
    same(tfs_proto(tensor, content=True), tensor)
    same(tfs_proto(tensor, content=False), tensor)
    same(worker_frame(tensor), tensor)
    if tensor.datatype in CONTENTS_FIELD:
        same(v2_grpc(tensor, raw=False), tensor)
    if utf8(tensor) and tensor.datatype != "FP16":  # JSON widens FP16 to FP32 on the way out
        same(v2(tensor, binary=False), tensor)
    if tensor.data.size and (tensor.datatype != "BYTES" or tensor.data.ndim == 1 or utf8(tensor)):
        same(tfs_rest(tensor), tensor)
