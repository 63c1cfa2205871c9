"""Keras LSTM/GRU and a 2.8M-parameter ResNet-like PyTorch CNN through ``modelgate convert`` (a real CLI
process): each target converts and verifies, or is refused with its stage, cause and what to do (no crash,
no traceback); what is published is served by the real gateway and answers like the source."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from converters.isolation import run_step
from tests.converters.served import (
    Converted,
    assert_answers_like_source,
    cli_convert,
    registry_for,
    served_answers,
    source_answers,
)

pytestmark = [pytest.mark.frameworks, pytest.mark.slow]


def assert_clear_failures(converted: Converted) -> None:
    """Exit 0/1; every failed target names its stage, cause and action in our words."""
    assert converted.code in (0, 1), converted.err
    for target, result in converted.artifacts().items():
        if not result["passed"]:
            assert result["stage"] and result["reason"] and result["action"], target
    for marker in ("Traceback", "\x1b[", "exit code -", "Error:"):
        assert marker not in converted.err, (marker, converted.err)


@pytest.fixture(scope="module", params=["lstm", "gru"])
def keras_rnn(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Converted, Path]:
    cell = str(request.param)
    folder = tmp_path_factory.mktemp(f"keras_{cell}")
    source, samples = folder / f"{cell}.keras", folder / "samples.npy"
    run_step("tests.converters.shapes_steps:keras_recurrent",
             {"path": str(source), "samples": str(samples), "cell": cell}, folder / "steps")  # fmt: skip
    return cli_convert(source, folder / "repo", cell, "--to", "all", "--samples", str(samples)), source


@pytest.mark.anyio
async def test_keras_recurrent_model(keras_rnn: tuple[Converted, Path], tmp_path: Path) -> None:
    """ONNX and SavedModel convert, verify and serve; TFLite is 'not supported' up front (its converter needs
    TensorFlow Select ops for Keras LSTM/GRU at a dynamic batch: seen failing on TensorListReserve)."""
    converted, source = keras_rnn
    assert_clear_failures(converted)
    results = converted.artifacts()
    assert converted.code == 1
    assert set(converted.published()) == {"onnx", "savedmodel"}
    layer = converted.name.upper()
    for target in ("tflite", "tflite_fp16", "tflite_int8"):
        assert results[target]["stage"] == "unsupported", (target, results[target]["reason"])
        assert results[target]["reason"].startswith(f"not supported for this model: Keras {layer} layers"), target
        assert results[target]["action"] == "use the onnx or savedmodel target"
    assert "FAIL tflite_int8" in converted.err and "not supported for this model" in converted.err
    samples = converted.repo.parent / "samples.npy"
    np.savez(tmp_path / "inputs.npz", sequence=np.load(samples))
    expected, _ = source_answers(source, "keras", tmp_path / "inputs.npz", tmp_path)
    targets = set(converted.published())
    answers = await served_answers(converted, {"sequence": np.load(samples)}, targets, registry_for(False))
    assert_answers_like_source(converted, answers, expected)


@pytest.fixture(scope="module")
def resnet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Converted, Path, Path, int]:
    folder = tmp_path_factory.mktemp("resnet")
    source, samples = folder / "resnet.pt2", folder / "samples.npy"
    made = run_step("tests.converters.shapes_steps:torch_resnet", {"path": str(source), "samples": str(samples)},
                    folder / "steps")  # fmt: skip
    converted = cli_convert(source, folder / "repo", "resnet", "--to", "onnx,torchscript,savedmodel,tflite_int8",
                            "--samples", str(samples))  # fmt: skip
    return converted, source, samples, int(made["parameters"])


@pytest.mark.anyio
async def test_resnet_like_cnn(resnet: tuple[Converted, Path, Path, int], tmp_path: Path) -> None:
    """Every target (onnx, torchscript, savedmodel via onnx2tf, tflite_int8) converts and verifies."""
    converted, source, samples, parameters = resnet
    assert 2_700_000 < parameters < 2_900_000
    assert_clear_failures(converted)
    results = converted.artifacts()
    assert converted.code == 0, converted.err
    for target, result in results.items():
        assert result["passed"], (target, result["reason"], result["detail"])
    int8 = results["tflite_int8"]  # 3x3 conv kernels of 9k-590k elements: dynamic-range int8 quantizes them
    assert int8["quantized_tensors"] > 0 and int8["compression_vs_fp32"] < 0.5
    np.savez(tmp_path / "inputs.npz", image=np.load(samples))
    expected, _ = source_answers(source, "torch_export", tmp_path / "inputs.npz", tmp_path)
    targets = set(converted.published()) - {"torchscript"}
    answers = await served_answers(converted, {"image": np.load(samples)}, targets, registry_for(False))
    assert_answers_like_source(converted, answers, expected)
