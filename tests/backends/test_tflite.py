"""The TFLite backend (ai-edge-litert, in-process) against ONNX Runtime on the same Keras model."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from gateway.backends.tflite import TFLiteBackend
from gateway.core.backend import ModelVersionSource
from gateway.core.config import ModelConfig, TensorConfig
from gateway.core.errors import ConfigError
from tests.backends.keras_models import KerasArtifacts, digit_images, shared_artifacts

pytestmark = [pytest.mark.anyio, pytest.mark.frameworks]


@pytest.fixture(scope="session")
def keras_artifacts(tmp_path_factory: pytest.TempPathFactory) -> KerasArtifacts:
    return shared_artifacts(tmp_path_factory.getbasetemp())


def source(version_dir: Path, **config: object) -> ModelVersionSource:
    return ModelVersionSource("digits", 1, ModelConfig.model_validate({"backend": "tflite", **config}), version_dir)


def reference(artifacts: KerasArtifacts, images: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(artifacts.onnx), providers=["CPUExecutionProvider"])
    result: np.ndarray = session.run(None, {"image": images})[0]
    return result


async def test_batch_dimension_is_resized_per_request(keras_artifacts: KerasArtifacts) -> None:
    backend = TFLiteBackend(source(keras_artifacts.tflite.parent))
    await backend.load()
    try:
        for batch in (1, 32, 7, 450, 1):
            images = digit_images(batch, offset=3)
            out = await backend.infer({"image": images}, ["output_0"])
            assert out["output_0"].shape == (batch, 10)
            np.testing.assert_allclose(out["output_0"], reference(keras_artifacts, images), atol=1e-5)
    finally:
        await backend.unload()


async def test_concurrent_requests_of_different_sizes_are_serialised(keras_artifacts: KerasArtifacts) -> None:
    backend = TFLiteBackend(source(keras_artifacts.tflite.parent, parameters={"num_threads": 1}))
    await backend.load()
    try:
        batches = [digit_images(n, offset=n) for n in (1, 5, 2, 9, 1, 30, 4, 4)]
        results = await asyncio.gather(*(backend.infer({"image": b}, ["output_0"]) for b in batches))
        for got, images in zip(results, batches, strict=True):
            np.testing.assert_allclose(got["output_0"], reference(keras_artifacts, images), atol=1e-5)
    finally:
        await backend.unload()


async def test_signature_uses_the_savedmodel_names_and_dynamic_batch(keras_artifacts: KerasArtifacts) -> None:
    backend = TFLiteBackend(source(keras_artifacts.tflite.parent))
    await backend.load()
    try:
        assert [(t.name, t.datatype, t.shape) for t in backend.signature.inputs] == [("image", "FP32", (-1, 8, 8, 1))]
        assert [(t.name, t.datatype, t.shape) for t in backend.signature.outputs] == [("output_0", "FP32", (-1, 10))]
    finally:
        await backend.unload()


async def test_config_tensors_are_checked_against_the_model(keras_artifacts: KerasArtifacts) -> None:
    wrong = [TensorConfig(name="image", datatype="FP32", shape=[-1, 64])]
    backend = TFLiteBackend(source(keras_artifacts.tflite.parent, inputs=wrong))
    with pytest.raises(ConfigError, match="config shape of 'image' is \\[-1, 64\\], artifact rank is 4"):
        await backend.load()


def test_bad_parameters_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="parameters: num_threads: Input should be greater than or equal to 1"):
        TFLiteBackend(source(tmp_path, parameters={"num_threads": 0}))


async def test_unknown_signature_name_lists_the_available_ones(keras_artifacts: KerasArtifacts) -> None:
    backend = TFLiteBackend(source(keras_artifacts.tflite.parent, parameters={"signature_name": "nope"}))
    with pytest.raises(
        ConfigError, match=r"signature_name 'nope' is not in the model \(it has \['serving_default'\]\)"
    ):
        await backend.load()


async def test_missing_and_corrupt_artifacts_are_load_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"model\.tflite: artifact not found"):
        await TFLiteBackend(source(tmp_path)).load()
    (tmp_path / "model.tflite").write_bytes(b"\x00" * 64)
    with pytest.raises(ConfigError, match="LiteRT cannot load it"):
        await TFLiteBackend(source(tmp_path)).load()


def test_module_imports_no_framework() -> None:
    code = (
        "import sys, gateway.backends.tflite;"
        "print(sorted(m for m in sys.modules if m.startswith(('tensorflow', 'ai_edge'))))"
    )
    import subprocess

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]"


async def test_inline_mode_answers_and_fails_exactly_as_the_pool_does(keras_artifacts: KerasArtifacts) -> None:
    import threading

    from gateway.core.errors import BackendError, InvalidInput

    batches = [digit_images(n, offset=n) for n in (1, 32, 7, 1)]
    answers: dict[bool, list[np.ndarray]] = {}
    refusals: dict[bool, list[str]] = {}
    for inline in (False, True):
        backend = TFLiteBackend(source(keras_artifacts.tflite.parent, parameters={"inline": inline}))
        await backend.load()
        try:
            answers[inline] = [(await backend.infer({"image": b}, ["output_0"]))["output_0"] for b in batches]
            threads = [t.name for t in threading.enumerate() if t.name.startswith("tflite-digits")]
            # LiteRT itself refuses a wrong element type and a wrong non-batch dimension (the data plane
            # would have caught both): InvalidInput and BackendError in both modes.
            with pytest.raises(InvalidInput) as invalid:
                await backend.infer({"image": batches[0].astype(np.float64)}, ["output_0"])
            with pytest.raises(BackendError) as failed:
                await backend.infer({"image": np.zeros((1, 8, 8, 2), np.float32)}, ["output_0"])
            refusals[inline] = [str(invalid.value), str(failed.value)]
            again = await backend.infer({"image": batches[0]}, ["output_0"])  # the interpreter recovers
            assert again["output_0"].tobytes() == answers[inline][0].tobytes()
        finally:
            await backend.unload()
        if inline:
            assert threads == [], f"inline mode started interpreter threads {threads}"
        else:
            assert threads, "the pooled mode ran without its thread"
    for pooled, inline_answer in zip(answers[False], answers[True], strict=True):
        assert pooled.shape == inline_answer.shape and pooled.tobytes() == inline_answer.tobytes()
    assert refusals[False] == refusals[True]
