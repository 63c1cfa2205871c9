"""V2 REST in-process: the real ASGI app over the real data plane and ONNX models."""

from __future__ import annotations

import json
import struct
from collections.abc import AsyncIterator

import httpx
import numpy as np
import pytest
from sklearn.datasets import load_digits

from gateway.protocols.v2.rest_api import infer_target
from tests.harness import Served

pytestmark = pytest.mark.anyio
LIMIT = 64 * 1024


@pytest.fixture
async def client(served: Served) -> AsyncIterator[httpx.AsyncClient]:
    app = served.http_app(LIMIT)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
        yield c


def pixels(n: int = 2) -> np.ndarray:
    return load_digits().data[:n].astype(np.float32)


def v2_json(x: np.ndarray, **extra: object) -> dict[str, object]:
    return {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}],
            **extra}  # fmt: skip


def binary_body(header: dict[str, object], *chunks: bytes) -> tuple[bytes, dict[str, str]]:
    head = json.dumps(header).encode()
    return head + b"".join(chunks), {
        "Inference-Header-Content-Length": str(len(head)),
        "Content-Type": "application/octet-stream",
    }


def split_binary(response: httpx.Response) -> tuple[dict[str, object], bytes]:
    n = int(response.headers["inference-header-content-length"])
    return json.loads(response.content[:n]), response.content[n:]


async def test_health_and_server_metadata(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v2/health/live")).json() == {"live": True}
    ready = await client.get("/v2/health/ready")
    assert ready.status_code == 200 and ready.json() == {"ready": True}
    meta = (await client.get("/v2")).json()
    assert meta["name"] == "modelgate" and "binary_tensor_data" in meta["extensions"]


async def test_model_metadata_and_readiness(client: httpx.AsyncClient) -> None:
    meta = (await client.get("/v2/models/digits_mlp")).json()
    assert meta["inputs"] == [{"name": "pixels", "datatype": "FP32", "shape": [-1, 64]}]
    assert (await client.get("/v2/models/digits_mlp/versions/1")).json()["versions"] == ["1"]
    assert (await client.get("/v2/models/digits_mlp/ready")).json() == {"name": "digits_mlp", "ready": True}
    assert (await client.get("/v2/models/digits_mlp/versions/1/ready")).status_code == 200


async def test_json_infer_round_trip_and_id_echo(client: httpx.AsyncClient) -> None:
    x = pixels(3)
    r = await client.post("/v2/models/digits_mlp/infer", json=v2_json(x, id="abc"))
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["id"] == "abc" and body["model_name"] == "digits_mlp" and body["model_version"] == "1"
    (out,) = body["outputs"]
    assert out["name"] == "probs" and out["shape"] == [3, 10] and out["datatype"] == "FP32"
    assert np.argmax(np.array(out["data"]).reshape(3, 10), 1).tolist() == load_digits().target[:3].tolist()


async def test_nested_json_data_is_accepted(client: httpx.AsyncClient) -> None:
    x = pixels(2)
    doc = {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [2, 64], "data": x.tolist()}]}
    assert (await client.post("/v2/models/digits_mlp/versions/1/infer", json=doc)).status_code == 200


async def test_binary_extension_both_ways_is_byte_exact(client: httpx.AsyncClient) -> None:
    x = pixels(4)
    raw = x.astype("<f4").tobytes()
    header = {
        "inputs": [
            {"name": "pixels", "datatype": "FP32", "shape": [4, 64], "parameters": {"binary_data_size": len(raw)}}
        ],
        "outputs": [{"name": "probs", "parameters": {"binary_data": True}}],
    }
    body, headers = binary_body(header, raw)
    r = await client.post("/v2/models/digits_mlp/infer", content=body, headers=headers)
    assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
    head, data = split_binary(r)
    (out,) = head["outputs"]  # type: ignore[misc]
    assert out == {"name": "probs", "datatype": "FP32", "shape": [4, 10], "parameters": {"binary_data_size": 160}}
    probs = np.frombuffer(data, "<f4").reshape(4, 10)
    json_r = await client.post("/v2/models/digits_mlp/infer", json=v2_json(x))
    assert probs.tolist() == np.array(json_r.json()["outputs"][0]["data"], np.float32).reshape(4, 10).tolist()


async def test_binary_data_output_on_request_and_per_output_override(client: httpx.AsyncClient) -> None:
    doc = v2_json(pixels(1), parameters={"binary_data_output": True})
    r = await client.post("/v2/models/digits_mlp/infer", json=doc)
    _head, data = split_binary(r)
    assert len(data) == 40
    doc["outputs"] = [{"name": "probs", "parameters": {"binary_data": False}}]
    assert "data" in (await client.post("/v2/models/digits_mlp/infer", json=doc)).json()["outputs"][0]


async def test_header_less_binary_body_for_single_input_model(client: httpx.AsyncClient) -> None:
    x = pixels(2)
    r = await client.post("/v2/models/digits_mlp/infer", content=x.tobytes(),
                          headers={"Inference-Header-Content-Length": "0"})  # fmt: skip
    assert r.status_code == 200 and r.json()["outputs"][0]["shape"] == [2, 10]


async def test_every_datatype_round_trips_as_json_and_binary(client: httpx.AsyncClient) -> None:
    values: dict[str, list[object]] = {
        "BOOL": [True, False], "UINT8": [0, 255], "UINT16": [0, 65535], "UINT32": [0, 2**32 - 1],
        "UINT64": [0, 2**64 - 1], "INT8": [-128, 127], "INT16": [-1, 2], "INT32": [-(2**31), 5],
        "INT64": [-(2**63), 2**63 - 1], "FP16": [1.5, -0.25], "FP32": [0.5, 3.0], "FP64": [1e-300, 2.5],
        "BYTES": ["héllo", ""],
    }  # fmt: skip
    inputs = [{"name": f"in_{t}", "datatype": t, "shape": [1, 2], "data": v} for t, v in values.items()]
    r = await client.post("/v2/models/types/infer", json={"inputs": inputs})
    assert r.status_code == 200, r.text
    assert {o["name"][4:]: o["data"] for o in r.json()["outputs"]} == values
    # Binary: BYTES as 4-byte length prefixes, numbers little-endian, both directions.
    from gateway.core.codec.datatypes import numpy_dtype

    chunks, binary_inputs = [], []
    for t, v in values.items():
        raw = (b"".join(struct.pack("<I", len(s.encode())) + s.encode() for s in v)  # type: ignore[union-attr]
               if t == "BYTES" else np.array(v, numpy_dtype(t)).tobytes())  # fmt: skip
        chunks.append(raw)
        binary_inputs.append({"name": f"in_{t}", "datatype": t, "shape": [1, 2],
                              "parameters": {"binary_data_size": len(raw)}})  # fmt: skip
    body, headers = binary_body({"inputs": binary_inputs, "parameters": {"binary_data_output": True}}, *chunks)
    r = await client.post("/v2/models/types/infer", content=body, headers=headers)
    head, data = split_binary(r)
    assert data == b"".join(chunks)
    assert [o["parameters"]["binary_data_size"] for o in head["outputs"]] == [len(c) for c in chunks]  # type: ignore[index]


@pytest.mark.parametrize(
    ("path", "doc", "status", "needle"),
    [
        ("/v2/models/nope/infer", None, 404, "unknown model 'nope'"),
        ("/v2/models/digits_mlp/versions/7/infer", None, 404, "no served version 7"),
        ("/v2/models/digits_mlp/versions/x/infer", None, 400, "version 'x' of model 'digits_mlp' is not valid"),
        ("/v2/models/digits_mlp/versions/01/infer", None, 400, "1 to 18 ASCII digits without a leading zero"),
        ("/v2/models/digits_mlp/versions/" + "1" * 4400 + "/infer", None, 400, "is not valid"),
        ("/v2/models/nope/infer", {"inputs": "garbage"}, 404, "unknown model 'nope'"),
        ("/v2/models/broken/infer", None, 503, "max_batch_size"),
        ("/v2/models/digits_mlp/infer", {"inputs": []}, 400, "'inputs' must be a non-empty list"),
        (
            "/v2/models/digits_mlp/infer",
            {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 63], "data": [0.0] * 63}]},
            400,
            "shape [1, 63] does not match",
        ),
        (
            "/v2/models/digits_mlp/infer",
            {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": [0.0] * 10}]},
            400,
            "needs 64 elements, data has 10",
        ),
        (
            "/v2/models/digits_mlp/infer",
            {"inputs": [{"name": "pixels", "datatype": "INT32", "shape": [1, 64], "data": [0] * 64}]},
            400,
            "datatype INT32 does not match",
        ),
        (
            "/v2/models/digits_mlp/infer",
            {"inputs": [{"name": "pixels", "datatype": "FP99", "shape": [1, 64], "data": [0] * 64}]},
            400,
            "unknown datatype 'FP99'",
        ),
        (
            "/v2/models/digits_mlp/infer",
            {"inputs": [{"name": "px", "datatype": "FP32", "shape": [1, 64], "data": [0] * 64}]},
            400,
            "unknown input 'px'",
        ),
        (
            "/v2/models/digits_mlp/infer",
            {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, -64], "data": [0] * 64}]},
            400,
            "negative dimension",
        ),
        (
            "/v2/models/digits_mlp/infer",
            {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": ["a"] * 64}]},
            400,
            "data[0] is a string; FP32 takes numbers",
        ),
        (
            "/v2/models/digits_mlp/infer",
            {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64]}]},
            400,
            "needs 'data' or parameters.binary_data_size",
        ),
        (
            "/v2/models/digits_mlp/infer",
            {
                "inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": [0] * 64}],
                "outputs": [{"name": "logits"}],
            },
            400,
            "unknown output 'logits'",
        ),
        (
            "/v2/models/types/infer",
            {"inputs": [{"name": "in_UINT8", "datatype": "UINT8", "shape": [1, 1], "data": [300]}]},
            400,
            "value 300 is outside the UINT8 range",
        ),
    ],
)
async def test_client_errors_are_json_4xx_naming_the_field(
    client: httpx.AsyncClient, path: str, doc: dict[str, object] | None, status: int, needle: str
) -> None:
    r = await client.post(path, json=doc if doc is not None else v2_json(pixels(1)))
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    assert needle in r.json()["error"]


@pytest.mark.parametrize(
    ("body", "headers", "needle"),
    [
        (b"{not json", {}, "request body is not valid JSON (line 1, column 2"),
        (b"[1, 2]", {}, "must be a JSON object"),
        (b'{"inputs": []}', {"Inference-Header-Content-Length": "99"}, "Inference-Header-Content-Length is 99"),
        (b'{"inputs": []}', {"Inference-Header-Content-Length": "x"}, "must be a non-negative integer"),
        (b"\x00" * 10, {"Inference-Header-Content-Length": "0"}, "does not fit input 'pixels'"),
    ],
)
async def test_malformed_bodies_are_400(client: httpx.AsyncClient, body: bytes, headers: dict[str, str],
                                        needle: str) -> None:  # fmt: skip
    r = await client.post("/v2/models/digits_mlp/infer", content=body, headers=headers)
    assert r.status_code == 400 and needle in r.json()["error"]


async def test_binary_size_mismatches_are_400(client: httpx.AsyncClient) -> None:
    raw = pixels(1).tobytes()
    for size, needle in (
        (len(raw) - 4, "binary_data_size has 252 bytes; shape [1, 64] of FP32 needs 256"),
        (len(raw) + 4, "runs past the end"),
    ):
        header = {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64],
                              "parameters": {"binary_data_size": size}}]}  # fmt: skip
        body, headers = binary_body(header, raw)
        r = await client.post("/v2/models/digits_mlp/infer", content=body, headers=headers)
        assert r.status_code == 400 and needle in r.json()["error"]
    body, headers = binary_body(
        {
            "inputs": [
                {"name": "pixels", "datatype": "FP32", "shape": [1, 64], "parameters": {"binary_data_size": len(raw)}}
            ]
        },
        raw,
        b"extra",
    )
    r = await client.post("/v2/models/digits_mlp/infer", content=body, headers=headers)
    assert r.status_code == 400 and "after the last binary input" in r.json()["error"]


async def test_body_over_limit_is_413(client: httpx.AsyncClient) -> None:
    r = await client.post("/v2/models/digits_mlp/infer", content=b" " * (LIMIT + 1))
    assert r.status_code == 413 and "over the limit" in r.json()["error"]


async def test_unknown_routes_and_methods_are_json(client: httpx.AsyncClient) -> None:
    r = await client.get("/v2/nothing")
    assert r.status_code == 404 and r.json()["error"] == "no such route"
    r = await client.get("/v2/models/digits_mlp/infer")
    assert r.status_code == 405 and "error" in r.json()
    r = await client.get("/v2/models/nope")
    assert r.status_code == 404 and r.json() == {"error": "unknown model 'nope'"}


async def test_repository_index_reports_broken_model(client: httpx.AsyncClient) -> None:
    rows = (await client.post("/v2/repository/index")).json()
    broken = next(r for r in rows if r["name"] == "broken")
    assert broken["state"] == "UNAVAILABLE" and "max_batch_size" in broken["reason"]
    ready = (await client.post("/v2/repository/index", json={"ready": True})).json()
    assert {r["name"] for r in ready} == {"digits_mlp", "types"}
    assert (await client.post("/v2/repository/index", content=b"{bad")).status_code == 400


async def test_openapi_lists_every_route(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.")
    assert "/v2/models/{model}/versions/{version}/infer" in doc["paths"]


async def test_request_metrics_by_status_with_bounded_labels(client: httpx.AsyncClient, served: Served) -> None:
    await client.post("/v2/models/digits_mlp/infer", json=v2_json(pixels(1)))
    for i in range(20):
        await client.post(f"/v2/models/random-{i}/infer", json=v2_json(pixels(1)))
        await client.post(f"/v2/models/digits_mlp/versions/{i + 100}/infer", json=v2_json(pixels(1)))
    registry = served.metrics.registry
    ok = registry.get_sample_value(
        "modelgate_requests_total", {"model": "digits_mlp", "version": "1", "protocol": "rest", "status": "200"}
    )
    unknown = registry.get_sample_value(
        "modelgate_requests_total", {"model": "_unknown", "version": "", "protocol": "rest", "status": "404"}
    )
    bad_version = registry.get_sample_value(
        "modelgate_requests_total", {"model": "digits_mlp", "version": "", "protocol": "rest", "status": "404"}
    )
    assert (ok, unknown, bad_version) == (1.0, 20.0, 20.0)
    series = [s for m in registry.collect() if m.name == "modelgate_requests" for s in m.samples]
    assert not any(s.labels.get("model", "").startswith("random-") for s in series)
    assert {s.labels["version"] for s in series} == {"1", ""}


def test_infer_target_parsing() -> None:
    assert infer_target("/v2/models/m/infer") == ("m", None)
    assert infer_target("/v2/models/m/versions/3/infer") == ("m", "3")
    assert infer_target("/v2/models//infer") is None
    assert infer_target("/v2/models/m/x/3/infer") is None
    assert infer_target("/v2/models/m/ready") is None


async def test_non_utf8_bytes_for_an_onnx_string_input_is_400(client: httpx.AsyncClient) -> None:
    raw = struct.pack("<I", 2) + b"\xff\xfe"
    others = [{"name": f"in_{t}", "datatype": t, "shape": [1, 1], "data": [False if t == "BOOL" else 1]}
              for t in ("BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16",
                        "FP32", "FP64")]  # fmt: skip
    header = {"inputs": [*others, {"name": "in_BYTES", "datatype": "BYTES", "shape": [1, 1],
                                   "parameters": {"binary_data_size": len(raw)}}]}  # fmt: skip
    body, headers = binary_body(header, raw)
    r = await client.post("/v2/models/types/infer", content=body, headers=headers)
    assert r.status_code == 400 and "must be UTF-8 text" in r.json()["error"]


async def test_errors_do_not_leak_server_paths(client: httpx.AsyncClient, mixed_repo: object) -> None:
    r = await client.post("/v2/models/broken/infer", json=v2_json(pixels(1)))
    assert r.status_code == 503
    assert "broken/config.yaml" in r.json()["error"] and str(mixed_repo) not in r.json()["error"]
