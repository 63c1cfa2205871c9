"""The TensorFlow SavedModel backend in its worker process, next to ONNX Runtime and TFLite.

One Keras model exported three ways is served as three versions of one model; the same
images must give the same probabilities through all of them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from gateway.backends.onnxruntime import OnnxRuntimeBackend
from gateway.backends.tensorflow import TensorFlowBackend
from gateway.backends.tflite import TFLiteBackend
from gateway.core.backend import BackendRegistry, ModelVersionSource
from gateway.core.config import ModelConfig
from gateway.core.dataplane import DataPlane, ModelRef
from gateway.core.errors import ConfigError
from gateway.core.models import ModelManager
from gateway.core.repository import ModelRepository
from gateway.core.types import InferRequest, Tensor
from gateway.metrics import Metrics
from tests.backends.keras_models import KerasArtifacts, digit_images, shared_artifacts, write_version
from tests.harness import infer_named, metadata_of

pytestmark = [pytest.mark.anyio, pytest.mark.frameworks]


def registry() -> BackendRegistry:
    """The built-in backends this test needs, registered explicitly like default_registry()."""
    reg = BackendRegistry()
    for backend in (OnnxRuntimeBackend, TFLiteBackend, TensorFlowBackend):
        reg.register(backend)
    return reg


@pytest.fixture(scope="session")
def keras_artifacts(tmp_path_factory: pytest.TempPathFactory) -> KerasArtifacts:
    return shared_artifacts(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def three_format_repo(keras_artifacts: KerasArtifacts, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``digits``: v1 ONNX, v2 TFLite, v3 SavedModel; ``badsig``: a SavedModel with a wrong signature_name."""
    repo = tmp_path_factory.mktemp("three_formats")
    write_version(repo, "digits", 1, "onnxruntime", keras_artifacts.onnx)
    write_version(repo, "digits", 2, "tflite", keras_artifacts.tflite)
    write_version(repo, "digits", 3, "tensorflow", keras_artifacts.savedmodel)
    (repo / "digits" / "config.yaml").write_text("version_policy: {all: true}\n", encoding="utf-8")
    write_version(repo, "badsig", 1, "tensorflow", keras_artifacts.savedmodel, "parameters: {signature_name: nope}\n")
    (repo / "badsig" / "config.yaml").write_text("max_queue_size: 4\n", encoding="utf-8")
    return repo


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def plane(three_format_repo: Path) -> AsyncIterator[DataPlane]:
    manager = ModelManager(ModelRepository(three_format_repo), registry())
    await manager.load_all()
    yield DataPlane(manager, Metrics())
    await manager.unload_all()


async def infer(plane: DataPlane, version: str, images: np.ndarray) -> np.ndarray:
    response = await infer_named(
        plane, InferRequest("digits", [Tensor("image", "FP32", images)], model_version=version)
    )
    (output,) = response.outputs
    return output.data


@pytest.mark.parametrize("batch", [1, 32, 450])
async def test_same_answer_through_onnxruntime_tflite_and_tensorflow(plane: DataPlane, batch: int) -> None:
    images = digit_images(batch, offset=100)
    onnx, tflite, savedmodel = [await infer(plane, v, images) for v in ("1", "2", "3")]
    assert savedmodel.shape == (batch, 10) and savedmodel.dtype == np.float32
    np.testing.assert_allclose(tflite, onnx, atol=1e-5)
    np.testing.assert_allclose(savedmodel, onnx, atol=1e-5)
    assert (savedmodel.argmax(1) == onnx.argmax(1)).all()


async def test_signature_comes_from_the_savedmodel(plane: DataPlane) -> None:
    meta = metadata_of(plane, "digits", "3")
    assert [(t.name, t.datatype, t.shape) for t in meta.inputs] == [("image", "FP32", (-1, 8, 8, 1))]
    assert [(t.name, t.datatype, t.shape) for t in meta.outputs] == [("output_0", "FP32", (-1, 10))]


async def test_concurrent_requests_share_one_worker(plane: DataPlane) -> None:
    import asyncio

    batches = [digit_images(n, offset=n) for n in range(1, 17)]
    results = await asyncio.gather(*(infer(plane, "3", b) for b in batches))
    expected = [await infer(plane, "1", b) for b in batches]
    for got, want in zip(results, expected, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)


async def test_unknown_signature_name_makes_the_version_unavailable(plane: DataPlane) -> None:
    (row,) = [r for r in plane.repository_index() if r["name"] == "badsig"]
    assert row["state"] == "UNAVAILABLE"
    assert "parameters.signature_name 'nope'" in row["reason"] and "serving_default" in row["reason"]
    assert plane.model_ready(ModelRef("digits", "3"))


def test_bad_parameters_name_the_field(tmp_path: Path) -> None:
    config = ModelConfig(backend="tensorflow", parameters={"worker_threads": 0, "colour": "red"})
    with pytest.raises(ConfigError, match=r"parameters: worker_threads: .*; colour: Extra inputs"):
        TensorFlowBackend(ModelVersionSource("m", 1, config, tmp_path / "1"))


async def test_missing_savedmodel_is_a_load_error(tmp_path: Path) -> None:
    backend = TensorFlowBackend(ModelVersionSource("m", 1, ModelConfig(backend="tensorflow"), tmp_path / "1"))
    with pytest.raises(ConfigError, match=r"model\.savedmodel: artifact not found"):
        await backend.load()
    assert not await backend.health()


async def test_corrupt_savedmodel_reports_the_worker_s_error(tmp_path: Path) -> None:
    broken = tmp_path / "1" / "model.savedmodel"
    broken.mkdir(parents=True)
    (broken / "saved_model.pb").write_bytes(b"this is not a protobuf")
    backend = TensorFlowBackend(ModelVersionSource("m", 1, ModelConfig(backend="tensorflow"), tmp_path / "1"))
    with pytest.raises(ConfigError, match="TensorFlow cannot load it"):
        await backend.load()
    assert backend.worker_pid is None


def test_gateway_process_never_imports_tensorflow(three_format_repo: Path) -> None:
    """Load and call all three formats from a fresh gateway-side process; TF stays in the worker."""
    script = textwrap.dedent(
        f"""
        import asyncio, json, sys
        from pathlib import Path
        import numpy as np
        from gateway.core.dataplane import DataPlane, ModelRef
        from gateway.core.models import ModelManager
        from gateway.core.repository import ModelRepository
        from gateway.core.types import InferRequest, Tensor
        from gateway.metrics import Metrics
        from tests.backends.test_tensorflow import registry

        async def main():
            manager = ModelManager(ModelRepository(Path({str(three_format_repo)!r})), registry())
            await manager.load_all()
            plane = DataPlane(manager, Metrics())
            image = np.zeros((1, 8, 8, 1), np.float32)
            shapes = []
            for version in ("1", "2", "3"):
                request = InferRequest("digits", [Tensor("image", "FP32", image)], version)
                response = await plane.infer(plane.resolve(ModelRef("digits", version)), request)
                shapes.append(response.outputs[0].shape)
            await manager.unload_all()
            heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "torch"))
            print(json.dumps({{"shapes": shapes, "heavy": heavy}}))

        asyncio.run(main())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=Path(__file__).parents[2]
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"shapes": [[1, 10], [1, 10], [1, 10]], "heavy": []}
