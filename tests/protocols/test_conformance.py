"""One conformance table through all five wire formats: the same malformed tensor gets the same verdict
everywhere (400 / INVALID_ARGUMENT naming the input and the rule), and nothing is allocated beyond the
declared limits (measured with tracemalloc around each request).

Each case describes a tensor once; each wire format builds its own request from it, or says the case
cannot be expressed on that wire (a NaN token has no binary form, a TF Serving REST shape comes from
the JSON nesting, so a "declared" shape cannot disagree with the data).
"""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest

from gateway.protos import open_inference_grpc_pb2 as pb
from gateway.protos import open_inference_grpc_pb2_grpc as pb_grpc
from gateway.protos.tfserving.tensorflow.core.framework import tensor_pb2, types_pb2
from gateway.protos.tfserving.tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
from gateway.tensorproto import TF_DTYPE, shape_proto
from tests.core.fakes import fake_registry, types_config, write_fake_model
from tests.harness import grpc_served, loaded

pytestmark = pytest.mark.anyio

LIMIT = 1 << 20  # max_tensor_bytes for these tests: 1 MiB
#: What handling one malformed request may allocate, at most, beyond its own body.
ALLOCATION_BUDGET = 512 * 1024
FORMATS = ("v2_json", "v2_binary", "v2_grpc", "tfs_rest", "tfs_grpc")


@dataclass(frozen=True)
class Case:
    """A malformed tensor, described once. ``values`` go to JSON/typed fields, ``raw`` to binary ones."""

    id: str
    model: str
    name: str
    datatype: str
    shape: list[int]
    rule: str
    values: Any = None
    raw: bytes | None = None
    json_body: bytes | None = None  # a literal JSON document for the "data"/"inputs" value (tokens)
    only: tuple[str, ...] = FORMATS
    tfs_values: Any = field(default=None)  # nested values for TF Serving REST (its shape is the nesting)
    names_input: bool = True  # False only where the body is not JSON at all (no input can be named)


ROW = [0.5] * 64


CASES = [
    Case("unknown-input", "pixels", "zz", "FP32", [1, 64], "unknown input 'zz'", ROW, np.zeros(64, "<f4").tobytes(),
         tfs_values=[ROW]),
    Case("datatype-mismatch", "pixels", "pixels", "FP64", [1, 64], "datatype FP64 does not match the model's FP32",
         ROW, np.zeros(64, "<f8").tobytes(), only=("v2_json", "v2_binary", "v2_grpc", "tfs_grpc")),
    Case("shape-mismatch", "pixels", "pixels", "FP32", [1, 63], "does not match the model's [-1, 64]", [0.5] * 63,
         np.zeros(63, "<f4").tobytes(), tfs_values=[[0.5] * 63]),
    Case("negative-dim", "pixels", "pixels", "FP32", [1, -64], "negative dimension", ROW, b"",
         only=("v2_json", "v2_binary", "v2_grpc", "tfs_grpc")),
    Case("huge-dims", "wide", "x", "FP32", [2**40, 64], "over the limit", [0.5], b"\0\0\0\0",
         only=("v2_json", "v2_binary", "v2_grpc", "tfs_grpc")),
    Case("over-max-batch", "pixels", "pixels", "FP32", [17, 64], "batch size 17 is over max_batch_size 16",
         ROW * 17, np.zeros(17 * 64, "<f4").tobytes(), tfs_values=[ROW] * 17),
    Case("tf-fill-1-gib", "pixels", "pixels", "FP32", [2**22, 64], "over max_batch_size 16", [0.5], b"\0\0\0\0",
         only=("v2_json", "v2_binary", "v2_grpc", "tfs_grpc")),
    Case("fill-over-limit", "wide", "x", "FP32", [4, 2**20], "over the limit", [0.5], b"\0\0\0\0",
         only=("v2_json", "v2_binary", "v2_grpc", "tfs_grpc")),
    Case("count-short", "pixels", "pixels", "FP32", [1, 64], "needs", [0.5] * 10, np.zeros(10, "<f4").tobytes(),
         only=("v2_json", "v2_binary", "v2_grpc", "tfs_grpc")),
    Case("raw-long", "pixels", "pixels", "FP32", [1, 64], "needs 256", None, np.zeros(65, "<f4").tobytes(),
         only=("v2_binary", "v2_grpc", "tfs_grpc")),
    Case("null", "pixels", "pixels", "FP32", [1, 64], "is null; FP32 takes numbers", [None] * 64,
         only=("v2_json", "tfs_rest"), tfs_values=[[None] * 64]),
    Case("string-number", "pixels", "pixels", "FP32", [1, 64], "is a string; FP32 takes numbers", ["1.5"] * 64,
         only=("v2_json", "tfs_rest"), tfs_values=[["1.5"] * 64]),
    Case("bool-as-number", "pixels", "pixels", "FP32", [1, 64], "is true; FP32 takes numbers", [True, *ROW[1:]],
         only=("v2_json", "tfs_rest"), tfs_values=[[True, *ROW[1:]]]),
    Case("fp32-out-of-range", "pixels", "pixels", "FP32", [1, 64], "outside the FP32 range", [1e+300, *ROW[1:]],
         only=("v2_json", "tfs_rest"), tfs_values=[[1e300, *ROW[1:]]]),
    Case("nan-token", "pixels", "pixels", "FP32", [1, 64], "not valid JSON", None,
         json_body=b"[" + b"NaN," * 63 + b"NaN]", only=("v2_json", "tfs_rest"), names_input=False),
    Case("ragged", "pixels", "pixels", "FP32", [2, 64], "ragged", [ROW, [0.5]], only=("v2_json", "tfs_rest"),
         tfs_values=[ROW, [0.5]]),
    Case("object-value", "pixels", "pixels", "FP32", [1, 64], "object", [{"a": 1}] * 64,
         only=("v2_json", "tfs_rest"), tfs_values=[[{"a": 1}] * 64]),
    Case("int8-out-of-range", "types", "in_INT8", "INT8", [1, 1], "value 300 is outside the INT8 range", [300],
         only=("v2_json", "v2_grpc", "tfs_rest", "tfs_grpc"), tfs_values=[[300]]),
    Case("uint64-negative", "types", "in_UINT64", "UINT64", [1, 1], "outside the UINT64 range", [-1],
         only=("v2_json", "tfs_rest"), tfs_values=[[-1]]),
    Case("int-with-fraction", "types", "in_INT32", "INT32", [1, 1], "INT32 takes integers", [1.5],
         only=("v2_json", "tfs_rest"), tfs_values=[[1.5]]),
    Case("bool-bytes", "types", "in_BOOL", "BOOL", [1, 2], "only bytes 0 and 1", None, b"\x01\x02",
         only=("v2_binary", "v2_grpc", "tfs_grpc")),
    Case("bool-as-number", "types", "in_BOOL", "BOOL", [1, 1], "BOOL takes true/false", [1],
         only=("v2_json", "tfs_rest"), tfs_values=[[1]]),
    Case("bytes-count-bomb", "types", "in_BYTES", "BYTES", [1, 20_000_000], "over the limit", None, b"abcd",
         only=("v2_binary", "v2_grpc")),
    Case("bytes-not-string", "types", "in_BYTES", "BYTES", [1, 1], "BYTES takes strings", [5],
         only=("v2_json", "tfs_rest"), tfs_values=[[5]]),
]  # fmt: skip


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("conformance")
    tensors = (
        "inputs: [{name: pixels, datatype: FP32, shape: [-1, 64]}]\n"
        "outputs: [{name: probs, datatype: FP32, shape: [-1, 64]}]\n"
    )
    write_fake_model(root, "pixels", f"backend: fake\nmax_batch_size: 16\n{tensors}")
    wide = (
        "inputs: [{name: x, datatype: FP32, shape: [-1, -1]}]\noutputs: [{name: y, datatype: FP32, shape: [-1, -1]}]\n"
    )
    write_fake_model(root, "wide", f"backend: fake\n{wide}")
    write_fake_model(root, "types", types_config())
    return root


@dataclass
class Wires:
    http: httpx.AsyncClient
    v2: pb_grpc.GRPCInferenceServiceStub
    tfs: prediction_service_pb2_grpc.PredictionServiceStub


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def wires(repo: Path) -> AsyncIterator[Wires]:
    async with loaded(repo, fake_registry(), max_tensor_bytes=LIMIT) as served:
        transport = httpx.ASGITransport(app=served.http_app())
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://gw") as http,
            grpc_served(served) as (channel, _),
        ):
            yield Wires(
                http,
                pb_grpc.GRPCInferenceServiceStub(channel),  # type: ignore[no-untyped-call]
                prediction_service_pb2_grpc.PredictionServiceStub(channel),  # type: ignore[no-untyped-call]
            )


# -- one request per wire format ---------------------------------------------------------------


async def v2_json(w: Wires, c: Case) -> tuple[str, str]:
    data = c.json_body.decode() if c.json_body is not None else json.dumps(c.values)
    head = json.dumps({"name": c.name, "datatype": c.datatype, "shape": c.shape})[:-1]
    body = f'{{"inputs": [{head}, "data": {data}}}]}}'.encode()
    r = await w.http.post(f"/v2/models/{c.model}/infer", content=body, headers={"content-type": "application/json"})
    return str(r.status_code), r.json()["error"]


async def v2_binary(w: Wires, c: Case) -> tuple[str, str]:
    raw = c.raw if c.raw is not None else b""
    header = json.dumps({"inputs": [{"name": c.name, "datatype": c.datatype, "shape": c.shape,
                                     "parameters": {"binary_data_size": len(raw)}}]}).encode()  # fmt: skip
    headers = {"Inference-Header-Content-Length": str(len(header)), "content-type": "application/octet-stream"}
    r = await w.http.post(f"/v2/models/{c.model}/infer", content=header + raw, headers=headers)
    return str(r.status_code), r.json()["error"]


async def v2_grpc(w: Wires, c: Case) -> tuple[str, str]:
    request = pb.ModelInferRequest(model_name=c.model)
    entry = request.inputs.add(name=c.name, datatype=c.datatype, shape=c.shape)
    if c.raw is not None:
        request.raw_input_contents.append(c.raw)
    elif c.datatype == "INT8":
        entry.contents.int_contents.extend(c.values)
    else:
        entry.contents.fp32_contents.extend(c.values)
    return await _grpc_error(w.v2.ModelInfer(request))


async def tfs_rest(w: Wires, c: Case) -> tuple[str, str]:
    body = c.json_body if c.json_body is None else b"[" + c.json_body + b"]"
    if body is None:
        body = json.dumps(c.tfs_values).encode()
    doc = b'{"inputs": {"' + c.name.encode() + b'": ' + body + b"}}"
    r = await w.http.post(f"/v1/models/{c.model}:predict", content=doc, headers={"content-type": "application/json"})
    return str(r.status_code), r.json()["error"]


async def tfs_grpc(w: Wires, c: Case) -> tuple[str, str]:
    dtype = TF_DTYPE[c.datatype]
    proto = tensor_pb2.TensorProto(dtype=dtype, tensor_shape=shape_proto(c.shape))
    if c.raw is not None:
        proto.tensor_content = c.raw
    elif dtype == types_pb2.DT_INT8:
        proto.int_val.extend(c.values)
    else:
        proto.float_val.extend(c.values)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = c.model
    request.inputs[c.name].CopyFrom(proto)
    return await _grpc_error(w.tfs.Predict(request))


async def _grpc_error(call: Any) -> tuple[str, str]:
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error.code().name, error.details() or ""
    return "OK", ""


SENDERS: dict[str, Callable[[Wires, Case], Any]] = {
    "v2_json": v2_json, "v2_binary": v2_binary, "v2_grpc": v2_grpc, "tfs_rest": tfs_rest, "tfs_grpc": tfs_grpc,
}  # fmt: skip
VERDICT = {"v2_json": "400", "v2_binary": "400", "tfs_rest": "400", "v2_grpc": "INVALID_ARGUMENT",
           "tfs_grpc": "INVALID_ARGUMENT"}  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
async def test_every_format_gives_the_same_verdict_within_the_allocation_budget(wires: Wires, case: Case) -> None:
    for wire in case.only:
        tracemalloc.start()
        try:
            code, message = await SENDERS[wire](wires, case)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert code == VERDICT[wire], (wire, code, message)
        assert f"'{case.name}'" in message or not case.names_input, (wire, message)
        assert case.rule in message, (wire, message)
        body = len(case.raw or b"") + len(json.dumps(case.values)) * 2 + len(json.dumps(case.tfs_values))
        assert peak < body + ALLOCATION_BUDGET, (wire, peak)


def test_every_case_runs_somewhere_and_every_format_is_covered() -> None:
    covered = {wire for case in CASES for wire in case.only}
    assert covered == set(FORMATS)
    assert len({c.id + c.model for c in CASES}) == len(CASES)
