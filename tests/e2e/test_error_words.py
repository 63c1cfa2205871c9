"""Error texts are the gateway's own words on every route of a real ``modelgate serve``: the
issue's examples (deep JSON nesting, lone surrogates, inhomogeneous arrays, undecodable
protobuf) get 400 / INVALID_ARGUMENT, never 5xx, and no library message, exception class,
traceback or path reaches the client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from gateway.protos import open_inference_grpc_pb2 as pb
from gateway.protos.tfserving.tensorflow_serving.apis import model_service_pb2, prediction_service_pb2
from tests.e2e.server_process import ServerProcess

pytestmark = pytest.mark.e2e

#: Fragments of library messages, exception classes and internals that must never reach a client.
LEAKS = (
    "recursion", "surrogate", "inhomogeneous", "setting an array element", "Traceback", "Error parsing message",
    "DecodeError", "ValueError", "TypeError", "KeyError", "Exception", "orjson", "numpy", "protobuf.",
    "<class", "/gateway/", ".py", "INVALID_PROTOBUF", "onnxruntime",
)  # fmt: skip

INFER_ROUTES = ("/v2/models/digits_mlp/infer", "/v2/models/digits_mlp/versions/1/infer")
PREDICT_ROUTES = ("/v1/models/digits_mlp:predict", "/v1/models/digits_mlp/versions/1:predict")
ROW = ",".join(["0"] * 64)
SHORT_ROW = ",".join(["0"] * 63)


def _v2(data: str, name: str = '"pixels"', shape: str = "[2, 64]") -> bytes:
    return f'{{"inputs": [{{"name": {name}, "datatype": "FP32", "shape": {shape}, "data": {data}}}]}}'.encode()


V2_BODIES = {
    "deep nesting": _v2("[" * 100_000 + "]" * 100_000),
    "nesting at the parser's limit": _v2("[" * 1000 + "0" + "]" * 1000, shape="[1, 64]"),
    "lone surrogate in a name": _v2(f"[{ROW}]", name='"\\ud800"', shape="[1, 64]"),
    "lone surrogate in the id": b'{"id": "\\udfff", ' + _v2(f"[{ROW}]", shape="[1, 64]")[1:],
    "inhomogeneous rows": _v2(f"[[{ROW}], [{SHORT_ROW}]]"),
    "inhomogeneous depth": _v2(f"[[{ROW}], 0]"),
    "string in a number tensor": _v2(f'[[{ROW}], ["x"]]'),
}
TFS_BODIES = {
    "deep nesting": b'{"instances": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "nesting at the parser's limit": b'{"instances": ' + b"[" * 1000 + b"0" + b"]" * 1000 + b"}",
    "lone surrogate": b'{"instances": ["\\ud800"]}',
    "lone surrogate as a key": b'{"instances": [{"\\ud800": 1}]}',
    "inhomogeneous rows": f'{{"instances": [[{ROW}], [{SHORT_ROW}]]}}'.encode(),
    "inhomogeneous depth": f'{{"instances": [[{ROW}], 0]}}'.encode(),
    "inhomogeneous columns": f'{{"inputs": [[{ROW}], [{SHORT_ROW}]]}}'.encode(),
}
INDEX_BODIES = {
    "deep nesting": b"[" * 100_000 + b"]" * 100_000,
    "lone surrogate": b'{"ready": "\\ud800"}',
    "not an object": b"[[1, 2], [3]]",
}


@pytest.fixture(scope="module")
def server(demo_repo: Path) -> Iterator[ServerProcess]:
    with ServerProcess(demo_repo) as proc:
        yield proc


def _assert_own_words(text: str) -> None:
    for fragment in LEAKS:
        assert fragment not in text, f"{fragment!r} leaked into {text!r}"


def _cases() -> list[tuple[str, str, bytes, dict[str, str]]]:
    cases = []
    for route in INFER_ROUTES:
        for label, body in V2_BODIES.items():
            cases.append((route, label, body, {"content-type": "application/json"}))
            header = {"inference-header-content-length": str(len(body)), "content-type": "application/octet-stream"}
            cases.append((route, f"{label} (binary header)", body, header))
    cases += [(r, label, body, {}) for r in PREDICT_ROUTES for label, body in TFS_BODIES.items()]
    cases += [("/v2/repository/index", label, body, {}) for label, body in INDEX_BODIES.items()]
    return cases


@pytest.mark.parametrize(("route", "label", "body", "headers"), _cases(), ids=lambda v: v if isinstance(v, str) else "")
def test_rest_bad_bodies_get_400_in_our_words(
    server: ServerProcess, route: str, label: str, body: bytes, headers: dict[str, str]
) -> None:
    r = httpx.post(f"{server.url}{route}", content=body, headers=headers, timeout=60)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert isinstance(error, str) and error
    _assert_own_words(error)


def _unary_methods() -> list[str]:
    services = [
        pb.DESCRIPTOR.services_by_name["GRPCInferenceService"],
        prediction_service_pb2.DESCRIPTOR.services_by_name["PredictionService"],
        model_service_pb2.DESCRIPTOR.services_by_name["ModelService"],
    ]
    return [f"/{service.full_name}/{method.name}" for service in services for method in service.methods]


@pytest.mark.parametrize("method", _unary_methods())
@pytest.mark.parametrize(
    "raw", [b"\x0a\x03\xed\xa0\x80", b"\xff\xff\xff", b"\x0a\x05ab"], ids=["surrogate", "corrupt", "truncated"]
)
def test_grpc_undecodable_messages_get_invalid_argument_in_our_words(
    server: ServerProcess, method: str, raw: bytes
) -> None:
    """Methods whose request has no fields parse any of these (unknown fields are skipped) and answer."""
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc}") as channel:
        try:
            channel.unary_unary(method)(raw, timeout=60)
        except grpc.RpcError as raised:
            error: grpc.Call = raised
            assert error.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNIMPLEMENTED), error.details()
            _assert_own_words(error.details() or "")
