"""TF Serving REST in-process: the real V2 ASGI app with the TF Serving routes, real ONNX models."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from sklearn.datasets import load_digits

from gateway.core.types import Tensor
from gateway.protocols.tfserving.json_codec import JsonFormat, encode_predict
from gateway.protocols.tfserving.rest_api import parse_path
from gateway.protocols.tfserving.servables import ServableRef
from tests.harness import Served, loaded
from tests.onnx_models import ONNX_TYPES, write_digits_repo

pytestmark = pytest.mark.anyio
LIMIT = 64 * 1024

#: Version 1 is the digits MLP, version 2 returns the first ten pixels: the answer shows which version ran.
VERSIONED_CONFIG = """\
backend: onnxruntime
inputs:
  - {name: pixels, datatype: FP32, shape: [-1, 64]}
outputs:
  - {name: probs, datatype: FP32, shape: [-1, 10]}
version_policy: {all: true}
labels: {stable: 1, canary: 2}
"""


def write_versioned_repo(repo: Path) -> Path:
    """``digits`` with two versions telling themselves apart, labels stable=1 and canary=2."""
    model_dir = write_digits_repo(repo, "digits")
    nodes = [helper.make_node("Slice", ["pixels", "starts", "ends", "axes"], ["probs"])]
    constants = [
        helper.make_tensor(name, TensorProto.INT64, [1], [value])
        for name, value in (("starts", 0), ("ends", 10), ("axes", 1))
    ]
    graph = helper.make_graph(
        nodes,
        "first_ten",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["b", 64])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["b", 10])],
        constants,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    (model_dir / "2").mkdir()
    onnx.save(model, model_dir / "2" / "model.onnx")
    (model_dir / "config.yaml").write_text(VERSIONED_CONFIG, encoding="utf-8")
    return repo


@pytest.fixture
async def client(served: Served) -> AsyncIterator[httpx.AsyncClient]:
    app = served.http_app(LIMIT)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
        yield c


@pytest.fixture
async def versioned(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with loaded(write_versioned_repo(tmp_path)) as served:
        app = served.http_app(LIMIT)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
            yield c


def pixels(n: int = 3) -> np.ndarray:
    data: np.ndarray = load_digits().data[:n]
    return data.astype(np.float32)


def labels(n: int = 3) -> list[int]:
    return [int(v) for v in load_digits().target[:n]]


# -- paths -------------------------------------------------------------------------------


def test_paths_follow_tf_servings_expressions() -> None:
    assert parse_path("/v1/models/m:predict") is not None
    target = parse_path("/v1/models/m/versions/3:predict")
    assert target is not None and target.ref == ServableRef("m", "3") and target.action == "predict"
    target = parse_path("/v1/models/m/labels/canary/metadata")
    assert target is not None and target.ref == ServableRef("m", None, "canary") and target.action == "metadata"
    target = parse_path("/V1/Models/m")
    assert target is not None and target.action == "status" and target.method == "GET"
    for path in ("/v1/models/m/versions/x", "/v1/models/a:b", "/v1/models/m:explain", "/v1/models/", "/v1/models"):
        assert parse_path(path) is None, path


# -- status and metadata -----------------------------------------------------------------


async def test_status_json_has_tf_servings_shape(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/models/digits_mlp")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json() == {
        "model_version_status": [
            {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]
    }
    assert (await client.get("/v1/models/digits_mlp/versions/1")).json() == r.json()


async def test_metadata_json_has_tf_servings_shape(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/models/digits_mlp/metadata")
    assert r.status_code == 200
    body = r.json()
    assert body["model_spec"] == {"name": "digits_mlp", "version": "1", "signature_name": ""}
    signature = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["method_name"] == "tensorflow/serving/predict"
    assert signature["inputs"] == {
        "pixels": {
            "name": "pixels",
            "dtype": "DT_FLOAT",
            "tensor_shape": {"dim": [{"size": "-1", "name": ""}, {"size": "64", "name": ""}], "unknown_rank": False},
        }
    }
    assert signature["outputs"]["probs"]["tensor_shape"]["dim"][1]["size"] == "10"


async def test_metadata_maps_every_datatype_to_a_tf_dtype(client: httpx.AsyncClient) -> None:
    signature = (await client.get("/v1/models/types/metadata")).json()["metadata"]["signature_def"]["signature_def"]
    dtypes = {name: info["dtype"] for name, info in signature["serving_default"]["inputs"].items()}
    assert dtypes["in_FP16"] == "DT_HALF" and dtypes["in_BYTES"] == "DT_STRING" and dtypes["in_UINT64"] == "DT_UINT64"
    assert len(dtypes) == len(ONNX_TYPES)


async def test_versions_and_labels_route_status_metadata_and_predict(versioned: httpx.AsyncClient) -> None:
    statuses = (await versioned.get("/v1/models/digits")).json()["model_version_status"]
    assert [(s["version"], s["state"]) for s in statuses] == [("1", "AVAILABLE"), ("2", "AVAILABLE")]
    canary = (await versioned.get("/v1/models/digits/labels/canary")).json()["model_version_status"]
    assert [s["version"] for s in canary] == ["2"]
    assert (await versioned.get("/v1/models/digits/labels/stable/metadata")).json()["model_spec"]["version"] == "1"
    x = pixels(2)
    body = {"instances": x.tolist()}
    first_ten = x[:, :10].tolist()
    latest = (await versioned.post("/v1/models/digits:predict", json=body)).json()["predictions"]
    assert latest == first_ten  # no version named: the highest one
    for path in ("/v1/models/digits/versions/2:predict", "/v1/models/digits/labels/canary:predict"):
        assert (await versioned.post(path, json=body)).json()["predictions"] == first_ten
    for path in ("/v1/models/digits/versions/1:predict", "/v1/models/digits/labels/stable:predict"):
        probs = np.array((await versioned.post(path, json=body)).json()["predictions"])
        assert probs.shape == (2, 10) and np.argmax(probs, 1).tolist() == labels(2)


# -- predict -----------------------------------------------------------------------------


async def test_row_and_columnar_formats_give_the_v2_answer(client: httpx.AsyncClient) -> None:
    x = pixels(3)
    v2 = {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [3, 64], "data": x.ravel().tolist()}]}
    expected = (await client.post("/v2/models/digits_mlp/infer", json=v2)).json()["outputs"][0]["data"]
    rows = await client.post("/v1/models/digits_mlp:predict", json={"instances": x.tolist()})
    assert rows.status_code == 200 and list(rows.json()) == ["predictions"]
    assert np.array(rows.json()["predictions"]).ravel().tolist() == expected
    assert np.argmax(rows.json()["predictions"], 1).tolist() == labels(3)
    named_rows = {"signature_name": "serving_default", "instances": [{"pixels": row} for row in x.tolist()]}
    assert (await client.post("/v1/models/digits_mlp:predict", json=named_rows)).json() == rows.json()
    for columnar in ({"inputs": x.tolist()}, {"inputs": {"pixels": x.tolist()}}):
        r = await client.post("/v1/models/digits_mlp/versions/1:predict", json=columnar)
        assert r.status_code == 200 and r.json() == {"outputs": rows.json()["predictions"]}


async def test_integer_json_values_feed_a_float_input(client: httpx.AsyncClient) -> None:
    x = load_digits().data[:1].astype(int)  # digits pixels are whole numbers 0..16
    r = await client.post("/v1/models/digits_mlp:predict", json={"instances": x.tolist()})
    assert r.status_code == 200 and np.argmax(r.json()["predictions"], 1).tolist() == labels(1)


def _types_columns(n: int = 2) -> tuple[dict[str, object], bytes]:
    """One [1, n] column per datatype of the identity model; BYTES carries one value as b64.

    The b64 value is UTF-8 (with a NUL and non-ASCII): ONNX Runtime string tensors only take text.
    """
    raw = "caf\u00e9\x00\u2603".encode()
    columns: dict[str, object] = {}
    for name in ONNX_TYPES:
        if name == "BYTES":
            columns[f"in_{name}"] = [[{"b64": base64.b64encode(raw).decode()}, "text"][:n]]
        elif name == "BOOL":
            columns[f"in_{name}"] = [[True, False][:n]]
        elif name.startswith("FP"):
            columns[f"in_{name}"] = [[1.5, -2.25][:n]]
        elif name.startswith("U"):
            columns[f"in_{name}"] = [[0, 200][:n]]
        else:
            columns[f"in_{name}"] = [[-3, 100][:n]]
    return columns, raw


async def test_every_datatype_and_b64_bytes_through_the_identity_model(client: httpx.AsyncClient) -> None:
    columns, raw = _types_columns()
    r = await client.post("/v1/models/types:predict", json={"inputs": columns})
    assert r.status_code == 200, r.text
    outputs = r.json()["outputs"]
    assert set(outputs) == {f"out_{name}" for name in ONNX_TYPES}
    for name in ONNX_TYPES:
        if name != "BYTES":
            assert outputs[f"out_{name}"] == columns[f"in_{name}"], name
    # The output's name does not end in _bytes, so valid UTF-8 comes back as text, as in TF Serving.
    assert outputs["out_BYTES"] == [[raw.decode(), "text"]]


async def test_row_format_with_several_inputs_and_outputs(client: httpx.AsyncClient) -> None:
    columns, _ = _types_columns(n=1)
    instance = {name: value[0] for name, value in columns.items()}  # type: ignore[index]
    r = await client.post("/v1/models/types:predict", json={"instances": [instance]})
    assert r.status_code == 200, r.text
    (row,) = r.json()["predictions"]
    assert row["out_INT32"] == [-3] and row["out_FP16"] == [1.5] and len(row) == len(ONNX_TYPES)


async def test_non_finite_float_tokens_are_refused_as_everywhere(client: httpx.AsyncClient) -> None:
    columns, _ = _types_columns()
    columns["in_FP64"] = [[float("nan"), float("inf")]]
    body = json.dumps({"inputs": columns}).encode()  # NaN/Infinity tokens: not JSON numbers
    r = await client.post("/v1/models/types:predict", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400 and "is not valid JSON" in r.json()["error"]


def test_non_finite_outputs_are_written_as_tf_serving_writes_them() -> None:
    out = Tensor("out", "FP64", np.array([[float("nan"), float("inf")]]))
    body = encode_predict([out], JsonFormat.COLUMNAR)
    assert body == b'{"outputs":[[NaN,Infinity]]}'


# -- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/v1/models/nope:predict", 404, "Servable not found for request: Latest(nope)"),
        ("/v1/models/digits_mlp/versions/9:predict", 404, "Servable not found for request: Specific(digits_mlp, 9)"),
        ("/v1/models/digits_mlp/labels/gold:predict", 404, "Unrecognized servable version label: gold"),
        ("/v1/models/broken:predict", 503, "broken"),
        ("/v1/models/digits_mlp:classify", 501, ":classify is not supported"),
        ("/v1/models/digits_mlp:regress", 501, ":regress is not supported"),
    ],
)
async def test_servable_errors_use_tf_servings_words(
    client: httpx.AsyncClient, path: str, status: int, message: str
) -> None:
    r = await client.post(path, json={"instances": pixels(1).tolist()})
    assert r.status_code == status and r.headers["content-type"] == "application/json"
    assert list(r.json()) == ["error"] and message in r.json()["error"]


async def test_status_and_metadata_errors(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/models/nope")
    assert r.status_code == 404 and r.json() == {"error": "Servable not found for request: Latest(nope)"}
    r = await client.get("/v1/models/digits_mlp/versions/7")
    assert r.status_code == 404 and r.json() == {"error": "Could not find version 7 of model digits_mlp"}
    r = await client.get("/v1/models/nope/metadata")
    assert r.status_code == 404 and "Latest(nope)" in r.json()["error"]
    r = await client.get("/v1/models/broken")
    assert r.status_code == 503 and "max_batch_size" in r.json()["error"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"instances": [[1]], "inputs": [[1]]}', "both 'instances' and 'inputs'"),
        (b'{"signature_name": "classify", "instances": [[1]]}', 'Serving signature name: "classify" not found'),
        (b'{"instances": [[1.0, 2.0]]}', "shape [1, 2] does not match the model's [-1, 64]"),
        (b'{"inputs": [1.0, 2.0]}', "shape [2] does not match"),
        (b'{"instances": [[' + b"1.0," * 63 + b"1.0], [1.0]]}", "ragged"),
        (b'{"instances": [[' + b'"a",' * 63 + b'"a"]]}', "instances[0] is a string; FP32 takes numbers"),
        (b'{"instances": []}', "non-empty list"),
        (b'{"instances": [{"pixels": [1]}, [1]]}', "mixes objects"),
        (b'{"instances": [{"image": [1]}]}', "every instance needs exactly ['pixels']"),
        (b'{"inputs": {"image": [[1]]}}', "unknown input 'image'"),
        (b'{"something": 1}', "needs 'instances' (row format) or 'inputs'"),
        (b'{"instances": [[1,', "request body is not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
    ],
)
async def test_bad_predict_bodies_are_400_naming_the_problem(
    client: httpx.AsyncClient, body: bytes, message: str
) -> None:
    r = await client.post("/v1/models/digits_mlp:predict", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert message in r.json()["error"]


async def test_bad_values_for_typed_inputs_are_400(client: httpx.AsyncClient) -> None:
    cases = {
        "in_BOOL": ([[1, 0]], "inputs.in_BOOL[0] is the number 1; BOOL takes true/false"),
        "in_INT8": ([[1, 300]], "value 300 is outside the INT8 range"),
        "in_INT32": ([[1.5, 2]], "inputs.in_INT32[0] is a number with a fraction; INT32 takes integers"),
        "in_BYTES": ([[{"b64": "not base64!"}, "x"]], "the b64 value is not valid base64"),
    }
    for name, (value, message) in cases.items():
        columns, _ = _types_columns()
        columns[name] = value
        r = await client.post("/v1/models/types:predict", json={"inputs": columns})
        assert r.status_code == 400 and message in r.json()["error"], (name, r.text)
    columns, _ = _types_columns()
    r = await client.post("/v1/models/types:predict", json={"instances": [[1]]})
    assert r.status_code == 400 and "must name them" in r.json()["error"]


async def test_wrong_methods_and_oversized_bodies(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/models/digits_mlp:predict")
    assert r.status_code == 405 and r.headers["allow"] == "POST" and "error" in r.json()
    r = await client.post("/v1/models/digits_mlp")
    assert r.status_code == 405 and r.headers["allow"] == "GET"
    r = await client.post("/v1/models/digits_mlp:predict", content=b"[" * (LIMIT + 1))
    assert r.status_code == 413 and "over the limit" in r.json()["error"]


async def test_predict_metrics_use_the_tfs_rest_protocol(client: httpx.AsyncClient, served: Served) -> None:
    await client.post("/v1/models/digits_mlp:predict", json={"instances": pixels(1).tolist()})
    await client.post("/v1/models/digits_mlp:predict", json={"instances": [[1.0]]})
    await client.post("/v1/models/made_up:predict", json={"instances": [[1.0]]})
    registry = served.metrics.registry

    def count(model: str, version: str, status: str) -> float | None:
        labels = {"model": model, "version": version, "protocol": "tfs_rest", "status": status}
        return registry.get_sample_value("modelgate_requests_total", labels)

    assert count("digits_mlp", "1", "200") == 1.0
    assert count("digits_mlp", "1", "400") == 1.0
    assert count("_unknown", "", "404") == 1.0
    assert registry.get_sample_value("modelgate_inflight_requests", {"protocol": "tfs_rest"}) == 0.0
