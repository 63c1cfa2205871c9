"""Structured logs on a real ``modelgate serve --log-format json --access-log``: every line is a JSON
object, and each REST and gRPC request leaves one access record with its request id, model,
version, protocol, status and latency; the id is the client's or a new one, and is returned."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest

from gateway.protos import open_inference_grpc_pb2 as pb
from gateway.protos import open_inference_grpc_pb2_grpc as pb_grpc
from tests.e2e.server_process import ServerProcess

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(demo_repo: Path) -> Iterator[ServerProcess]:
    with ServerProcess(demo_repo, "--log-format", "json", "--access-log") as proc:
        yield proc


def _access_record(server: ServerProcess, request_id: str) -> dict[str, Any]:
    line = server.wait_for_log(f'"request_id":"{request_id}"')
    record: dict[str, Any] = json.loads(line)
    assert record["logger"] == "modelgate.access"
    return record


def _doc() -> dict[str, object]:
    return {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": [0.0] * 64}]}


def test_rest_access_record_with_the_client_id(server: ServerProcess) -> None:
    r = httpx.post(f"{server.url}/v2/models/digits_mlp/infer", json=_doc(), headers={"X-Request-Id": "rest-1"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "rest-1"
    record = _access_record(server, "rest-1")
    assert {k: record[k] for k in ("protocol", "model", "version", "status")} == {
        "protocol": "rest", "model": "digits_mlp", "version": "1", "status": "200",
    }  # fmt: skip
    assert record["latency_ms"] >= 0 and record["level"] == "info"


def test_rest_error_and_tf_serving_are_logged_too(server: ServerProcess) -> None:
    r = httpx.post(f"{server.url}/v2/models/nope/infer", json=_doc(), headers={"X-Request-Id": "rest-404"})
    assert r.status_code == 404
    assert _access_record(server, "rest-404")["status"] == "404"
    body = {"instances": [[0.0] * 64]}
    r = httpx.post(f"{server.url}/v1/models/digits_mlp:predict", json=body, headers={"X-Request-Id": "tfs-1"})
    assert r.status_code == 200
    record = _access_record(server, "tfs-1")
    assert (record["protocol"], record["model"], record["status"]) == ("tfs_rest", "digits_mlp", "200")


def test_rest_made_id_is_returned_and_logged(server: ServerProcess) -> None:
    r = httpx.get(f"{server.url}/v2/models/digits_mlp")
    request_id = r.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)
    record = _access_record(server, request_id)
    assert (record["model"], record["status"]) == ("digits_mlp", "200")


def test_grpc_access_record_with_the_client_id(server: ServerProcess) -> None:
    x = np.zeros((1, 64), np.float32)
    request = pb.ModelInferRequest(model_name="digits_mlp", raw_input_contents=[x.tobytes()])
    request.inputs.add(name="pixels", datatype="FP32", shape=[1, 64])
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc}") as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        _, call = stub.ModelInfer.with_call(request, metadata=(("x-request-id", "grpc-1"),), timeout=60)
        assert ("x-request-id", "grpc-1") in tuple(call.trailing_metadata() or ())
        with pytest.raises(grpc.RpcError) as raised:
            stub.ModelMetadata(pb.ModelMetadataRequest(name="nope"), metadata=(("x-request-id", "grpc-404"),))
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    record = _access_record(server, "grpc-1")
    assert {k: record[k] for k in ("protocol", "model", "version", "status")} == {
        "protocol": "grpc", "model": "digits_mlp", "version": "1", "status": "OK",
    }  # fmt: skip
    assert _access_record(server, "grpc-404")["status"] == "NOT_FOUND"


def test_every_log_line_is_a_json_object(server: ServerProcess) -> None:
    httpx.get(f"{server.url}/v2/health/ready", headers={"X-Request-Id": "last-one"})
    _access_record(server, "last-one")
    for line in server.lines:
        assert isinstance(json.loads(line), dict), line
