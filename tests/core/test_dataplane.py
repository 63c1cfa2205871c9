"""The data plane on real ONNX models (no protocol in between)."""

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from sklearn.datasets import load_digits

from gateway.backends import default_registry
from gateway.core.dataplane import DataPlane
from gateway.core.errors import InvalidInput, ModelNotFound, ModelNotReady
from gateway.core.models import ModelManager
from gateway.core.repository import ModelRepository
from gateway.core.types import InferRequest, RequestedOutput, Tensor
from gateway.metrics import Metrics

pytestmark = pytest.mark.anyio


def digits(n: int) -> np.ndarray:
    return load_digits().data[:n].astype(np.float32)


async def test_infer_matches_onnxruntime_directly(dataplane: DataPlane, mixed_repo: Path) -> None:
    x = digits(5)
    response = await dataplane.infer(InferRequest("digits_mlp", [Tensor("pixels", "FP32", x)], id="r1"))
    expected = ort.InferenceSession(str(mixed_repo / "digits_mlp/1/model.onnx")).run(None, {"pixels": x})[0]
    (out,) = response.outputs
    assert (out.name, out.datatype, out.shape) == ("probs", "FP32", (5, 10))
    np.testing.assert_allclose(out.data, expected, rtol=1e-6)
    assert response.id == "r1" and response.model_version == "1"
    assert (out.data.argmax(1) == load_digits().target[:5]).all()


async def test_every_datatype_passes_through_identity(dataplane: DataPlane) -> None:
    values = {
        "BOOL": np.array([[True, False]]),
        "UINT8": np.array([[0, 255]], np.uint8),
        "UINT64": np.array([[0, 2**64 - 1]], np.uint64),
        "INT8": np.array([[-128, 127]], np.int8),
        "INT64": np.array([[-(2**63), 2**63 - 1]], np.int64),
        "FP16": np.array([[1.5, -0.25]], np.float16),
        "FP64": np.array([[1e-300, 3.5]], np.float64),
        "BYTES": np.array([[b"hello", b"\xc3\xa9t\xc3\xa9"]], dtype=object),
    }
    for name in ("UINT16", "UINT32", "INT16", "INT32", "FP32"):
        values[name] = np.array([[1, 2]], dtype=_np(name))
    inputs = [Tensor(f"in_{t}", t, v) for t, v in values.items()]
    response = await dataplane.infer(InferRequest("types", inputs))
    got = {o.name: o for o in response.outputs}
    for t, v in values.items():
        assert got[f"out_{t}"].datatype == t
        assert got[f"out_{t}"].data.tolist() == v.tolist()


async def test_requested_output_subset(dataplane: DataPlane) -> None:
    inputs = [Tensor(f"in_{t}", t, np.zeros((1, 1), dtype=object if t == "BYTES" else _np(t))) for t in _TYPES]
    for tensor in inputs:
        if tensor.datatype == "BYTES":
            tensor.data[0, 0] = b"x"
    response = await dataplane.infer(InferRequest("types", inputs, outputs=[RequestedOutput("out_INT8")]))
    assert [o.name for o in response.outputs] == ["out_INT8"]


async def test_errors(dataplane: DataPlane) -> None:
    good = [Tensor("pixels", "FP32", digits(1))]
    with pytest.raises(ModelNotFound, match="unknown model 'nope'"):
        await dataplane.infer(InferRequest("nope", good))
    with pytest.raises(ModelNotFound, match="no served version 9"):
        await dataplane.infer(InferRequest("digits_mlp", good, model_version="9"))
    with pytest.raises(ModelNotReady, match="max_batch_size"):
        await dataplane.infer(InferRequest("broken", good))
    with pytest.raises(InvalidInput, match="datatype FP64"):
        await dataplane.infer(InferRequest("digits_mlp", [Tensor("pixels", "FP64", digits(1).astype(np.float64))]))


async def test_broken_model_is_reported_and_others_serve(dataplane: DataPlane) -> None:
    rows = {r["name"]: r for r in dataplane.repository_index()}
    assert rows["broken"]["state"] == "UNAVAILABLE" and "max_batch_size" in rows["broken"]["reason"]
    assert rows["digits_mlp"]["state"] == "READY"
    assert dataplane.ready() and dataplane.model_ready("digits_mlp", None)
    with pytest.raises(ModelNotReady):
        dataplane.model_ready("broken", None)


async def test_config_contradicting_the_graph_fails_to_load(tmp_path: Path, mixed_repo: Path) -> None:
    config = mixed_repo / "digits_mlp" / "config.yaml"
    config.write_text(config.read_text().replace("[-1, 64]", "[-1, 65]"))
    manager = ModelManager(ModelRepository(mixed_repo), default_registry())
    await manager.load_all()
    row = next(r for r in manager.index() if r["name"] == "digits_mlp")
    assert row["state"] == "UNAVAILABLE" and "artifact says [-1, 64]" in row["reason"]
    await manager.unload_all()


async def test_metadata_comes_from_the_graph_when_config_omits_it(dataplane: DataPlane) -> None:
    meta = dataplane.model_metadata("types", "1").to_dict()
    assert meta["platform"] == "onnxruntime_onnx" and meta["versions"] == ["1"]
    assert {"name": "in_FP16", "datatype": "FP16", "shape": [-1, -1]} in meta["inputs"]


async def test_labels_and_default_version(tmp_path: Path, mixed_repo: Path) -> None:
    model = mixed_repo / "digits_mlp"
    (model / "2").mkdir()
    (model / "2" / "model.onnx").write_bytes((model / "1" / "model.onnx").read_bytes())
    config = model / "config.yaml"
    config.write_text(
        config.read_text().replace("{latest: 1}", "{all: true}") + "labels: {stable: 1}\ndefault_version: 1\n"
    )
    manager = ModelManager(ModelRepository(mixed_repo), default_registry())
    await manager.load_all()
    plane = DataPlane(manager, Metrics())
    assert plane.model_metadata("digits_mlp", None).versions == ["1", "2"]
    assert manager.resolve("digits_mlp", None).version == 1
    assert manager.resolve_label("digits_mlp", "stable").version == 1
    response = await plane.infer(InferRequest("digits_mlp", [Tensor("pixels", "FP32", digits(1))], model_version="2"))
    assert response.model_version == "2"
    await manager.unload_all()


_TYPES = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64",
          "BYTES"]  # fmt: skip


def _np(t: str) -> np.dtype[np.generic]:
    from gateway.core.datatypes import numpy_dtype

    return numpy_dtype(t)


async def test_dynamic_batching_answers_each_request_with_its_own_rows(mixed_repo: Path) -> None:
    config = mixed_repo / "digits_mlp" / "config.yaml"
    config.write_text(config.read_text() + "dynamic_batching: {concurrency: 1}\n")
    manager = ModelManager(ModelRepository(mixed_repo), default_registry())
    await manager.load_all()
    plane = DataPlane(manager, Metrics())
    x = digits(40)
    requests = [InferRequest("digits_mlp", [Tensor("pixels", "FP32", x[i : i + 1 + i % 3])]) for i in range(30)]
    import asyncio

    responses = await asyncio.gather(*(plane.infer(r) for r in requests))
    session = ort.InferenceSession(str(mixed_repo / "digits_mlp/1/model.onnx"))
    for request, response in zip(requests, responses, strict=True):
        expected = session.run(None, {"pixels": request.inputs[0].data})[0]
        np.testing.assert_allclose(response.outputs[0].data, expected, rtol=1e-5, atol=1e-6)
    await manager.unload_all()
