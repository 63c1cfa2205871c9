"""ONNX Runtime backend: parameters, artifacts, signature discovery, BYTES."""

from pathlib import Path

import numpy as np
import pytest

from gateway.backends.onnxruntime import OnnxRuntimeBackend
from gateway.core.backend import ModelVersionSource
from gateway.core.config import ModelConfig
from gateway.core.dataplane import ModelRef
from gateway.core.errors import ConfigError
from gateway.core.types import InferRequest, Tensor
from tests.harness import loaded
from tests.onnx_models import write_identity_model

pytestmark = pytest.mark.anyio


def source(tmp_path: Path, **config: object) -> ModelVersionSource:
    return ModelVersionSource("m", 1, ModelConfig.model_validate({"backend": "onnxruntime", **config}), tmp_path / "1")


def test_unknown_parameter_is_a_config_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"parameters: intra_op_thread: Extra inputs"):
        OnnxRuntimeBackend(source(tmp_path, parameters={"intra_op_thread": 2}))
    with pytest.raises(ConfigError, match=r"parameters: concurrency"):
        OnnxRuntimeBackend(source(tmp_path, parameters={"concurrency": 0}))


async def test_missing_and_corrupt_artifacts_fail_to_load_with_the_path(tmp_path: Path) -> None:
    backend = OnnxRuntimeBackend(source(tmp_path))
    with pytest.raises(ConfigError, match=r"model\.onnx: artifact not found"):
        await backend.load()
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "model.onnx").write_bytes(b"not an onnx file")
    with pytest.raises(ConfigError, match="ONNX Runtime cannot load it"):
        await backend.load()


async def test_signature_from_graph_and_bytes_round_trip(tmp_path: Path) -> None:
    write_identity_model(tmp_path / "1" / "custom.onnx")
    backend = OnnxRuntimeBackend(source(tmp_path, artifact="custom.onnx", parameters={"concurrency": 1}))
    await backend.load()
    specs = {s.name: s for s in backend.signature.inputs}
    assert (specs["in_BYTES"].datatype, specs["in_BYTES"].shape) == ("BYTES", (-1, -1))
    assert specs["in_FP16"].datatype == "FP16"
    words = np.array([[b"caf\xc3\xa9", b""]], dtype=object)
    feeds = {s.name: np.zeros((1, 2), dtype=object if s.datatype == "BYTES" else _dtype(s.datatype))
             for s in backend.signature.inputs}  # fmt: skip
    feeds["in_BYTES"] = words
    result = await backend.infer(feeds, ["out_BYTES", "out_FP16"])
    assert result["out_BYTES"].tolist() == [[b"caf\xc3\xa9", b""]]
    assert result["out_FP16"].dtype == np.float16
    await backend.unload()


async def test_config_naming_a_tensor_the_graph_lacks(tmp_path: Path) -> None:
    write_identity_model(tmp_path / "1" / "model.onnx")
    backend = OnnxRuntimeBackend(source(tmp_path, inputs=[{"name": "nope", "datatype": "FP32", "shape": [-1, -1]}]))
    with pytest.raises(ConfigError, match="config inputs names 'nope' but the artifact has"):
        await backend.load()


def _dtype(datatype: str) -> np.dtype[np.generic]:
    from gateway.core.codec.datatypes import numpy_dtype

    return numpy_dtype(datatype)


# -- through the data plane, against ONNX Runtime called directly ------------------------------


def _digits(n: int) -> np.ndarray:
    from sklearn.datasets import load_digits

    return load_digits().data[:n].astype(np.float32)


async def test_infer_matches_onnxruntime_directly(mixed_repo: Path) -> None:
    import onnxruntime as ort

    async with loaded(mixed_repo) as served:
        plane = served.dataplane
        x = _digits(5)
        response = await plane.infer(
            plane.resolve(ModelRef("digits_mlp")), InferRequest("digits_mlp", [Tensor("pixels", "FP32", x)])
        )
    expected = ort.InferenceSession(str(mixed_repo / "digits_mlp/1/model.onnx")).run(None, {"pixels": x})[0]
    (out,) = response.outputs
    assert (out.name, out.datatype, out.shape) == ("probs", "FP32", (5, 10))
    np.testing.assert_allclose(out.data, expected, rtol=1e-6)


async def test_metadata_comes_from_the_graph_when_config_omits_it(mixed_repo: Path) -> None:
    async with loaded(mixed_repo) as served:
        meta = served.dataplane.model_metadata(served.dataplane.resolve(ModelRef("types", "1"))).to_dict()
    assert meta["platform"] == "onnxruntime_onnx" and meta["versions"] == ["1"]
    assert {"name": "in_FP16", "datatype": "FP16", "shape": [-1, -1]} in meta["inputs"]


async def test_config_contradicting_the_graph_fails_to_load(mixed_repo: Path) -> None:
    config = mixed_repo / "digits_mlp" / "config.yaml"
    config.write_text(config.read_text().replace("[-1, 64]", "[-1, 65]"))
    async with loaded(mixed_repo) as served:
        row = next(r for r in served.dataplane.repository_index() if r["name"] == "digits_mlp")
    assert row["state"] == "UNAVAILABLE" and "artifact says [-1, 64]" in row["reason"]


async def test_dynamic_batching_answers_each_request_with_its_own_rows(mixed_repo: Path) -> None:
    import asyncio

    import onnxruntime as ort

    config = mixed_repo / "digits_mlp" / "config.yaml"
    config.write_text(config.read_text() + "dynamic_batching: {concurrency: 1}\n")
    x = _digits(40)
    requests = [InferRequest("digits_mlp", [Tensor("pixels", "FP32", x[i : i + 1 + i % 3])]) for i in range(30)]
    async with loaded(mixed_repo) as served:
        target = served.dataplane.resolve(ModelRef("digits_mlp"))
        responses = await asyncio.gather(*(served.dataplane.infer(target, r) for r in requests))
    session = ort.InferenceSession(str(mixed_repo / "digits_mlp/1/model.onnx"))
    for request, response in zip(requests, responses, strict=True):
        expected = session.run(None, {"pixels": request.inputs[0].data})[0]
        np.testing.assert_allclose(response.outputs[0].data, expected, rtol=1e-5, atol=1e-6)


# -- inline mode (parameters: {inline: true}): the same answers and errors, without the thread pool -----------


def _ort_threads(model: str) -> list[str]:
    import threading

    return [t.name for t in threading.enumerate() if t.name.startswith(f"ort-{model}")]


@pytest.mark.parametrize("batching", [False, True])
async def test_inline_mode_answers_exactly_as_the_pool_does(mixed_repo: Path, batching: bool) -> None:
    import asyncio

    config = mixed_repo / "digits_mlp" / "config.yaml"
    base = config.read_text().replace("dynamic_batching: {max_delay_ms: 0, concurrency: 2}\n", "")
    if batching:
        base += "dynamic_batching: {concurrency: 1}\n"
    x = _digits(40)
    requests = [InferRequest("digits_mlp", [Tensor("pixels", "FP32", x[i : i + 1 + i % 4])], id=f"r{i}")
                for i in range(24)]  # fmt: skip
    answers: dict[bool, list[np.ndarray]] = {}
    for inline in (False, True):
        config.write_text(base.replace("parameters:\n", "parameters:\n  inline: true\n") if inline else base)
        async with loaded(mixed_repo) as served:
            plane = served.dataplane
            target = plane.resolve(ModelRef("digits_mlp"))
            sequential = [await plane.infer(target, r) for r in requests]
            burst = await asyncio.gather(*(plane.infer(target, r) for r in requests))
            threads = _ort_threads("digits_mlp")
        assert [r.id for r in burst] == [r.id for r in requests]
        if inline:
            assert threads == [], f"inline mode started ONNX Runtime pool threads {threads}"
        else:
            assert threads, "the pooled mode ran without its pool"
        answers[inline] = [r.outputs[0].data for r in sequential]
        for one, other in zip(sequential, burst, strict=True):
            np.testing.assert_allclose(one.outputs[0].data, other.outputs[0].data, rtol=1e-5, atol=1e-6)
    for pooled, inline_answer in zip(answers[False], answers[True], strict=True):
        assert pooled.dtype == inline_answer.dtype and pooled.shape == inline_answer.shape
        assert pooled.tobytes() == inline_answer.tobytes()


async def test_inline_mode_maps_runtime_failures_as_the_pool_does(tmp_path: Path) -> None:
    from gateway.core.errors import BackendError

    write_identity_model(tmp_path / "1" / "model.onnx")
    messages = []
    for inline in (False, True):
        backend = OnnxRuntimeBackend(source(tmp_path, parameters={"inline": inline}))
        await backend.load()
        try:
            feeds = {s.name: np.ones((2, 3), dtype=object if s.datatype == "BYTES" else _dtype(s.datatype))
                     for s in backend.signature.inputs}  # fmt: skip
            feeds["in_BYTES"] = np.full((2, 3), b"x", dtype=object)
            feeds["in_INT32"] = np.arange(6, dtype=np.int32).reshape(2, 3)
            ok = await backend.infer(feeds, ["out_INT32", "out_BYTES"])
            assert ok["out_INT32"].tolist() == [[0, 1, 2], [3, 4, 5]] and ok["out_BYTES"][1, 2] == b"x"
            # ONNX Runtime itself refuses a feed of the wrong element type (the data plane would have caught it).
            with pytest.raises(BackendError) as caught:
                await backend.infer({**feeds, "in_INT32": np.zeros((2, 3), dtype=np.float64)}, ["out_INT32"])
            messages.append(str(caught.value))
        finally:
            await backend.unload()
    assert messages[0] == messages[1]
    assert "ONNX Runtime failed while running the model" in messages[0]


def test_inline_must_be_a_boolean(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"parameters: inline: Input should be a valid boolean"):
        OnnxRuntimeBackend(source(tmp_path, parameters={"inline": "sometimes"}))
