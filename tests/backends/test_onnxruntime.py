"""ONNX Runtime backend: parameters, artifacts, signature discovery, BYTES."""

from pathlib import Path

import numpy as np
import pytest

from gateway.backends.onnxruntime import OnnxRuntimeBackend
from gateway.core.backend import ModelVersionSource
from gateway.core.config import ModelConfig
from gateway.core.errors import ConfigError
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
    with pytest.raises(ConfigError, match="onnxruntime cannot load it"):
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
