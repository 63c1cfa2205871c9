"""Model shapes users have, end to end: source -> ``modelgate convert`` (a real CLI process) -> every target
the source supports -> published -> served by the real gateway -> the source's answers.

Multiple inputs/outputs, 2-D inputs, uint8 images with Rescaling/BatchNorm/Dropout, tuple and dict
outputs, sequence models (LSTM/GRU), and honest quantization of small models. Each model is converted
once per module; one test checks the conversion report, another serves what was published.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from converters.isolation import run_step
from gateway.core.config import CONFIG_FILE, load_model_config
from tests.converters.helpers import published
from tests.converters.served import (
    Converted,
    assert_answers_like_source,
    cli_convert,
    registry_for,
    served_answers,
    source_answers,
)

pytestmark = [pytest.mark.frameworks, pytest.mark.slow]
ROWS = 40
#: Torch models: (file stem, --to, extra CLI arguments, inputs {name: shape without batch}).
TORCH: dict[str, tuple[str, list[str], dict[str, tuple[int, ...]]]] = {
    "mlp": ("onnx,savedmodel,tflite", [], {"features": (5,)}),
    "two_in_tuple": ("onnx,torchscript,savedmodel,tflite", ["--output-names", "probs,pooled"],
                     {"image": (1, 6, 6), "meta": (3,)}),
    "dict_out": ("onnx,torchscript", [], {"x": (4,)}),
    "lstm": ("all", [], {"sequence": (7, 3)}),
    "gru": ("all", [], {"sequence": (7, 3)}),
}  # fmt: skip
#: Torch models whose TorchScript version is also served on a real TorchServe (slow to start: a few).
ON_TORCHSERVE = {"two_in_tuple", "dict_out", "lstm"}


@pytest.fixture(scope="module")
def keras_two(tmp_path_factory: pytest.TempPathFactory) -> tuple[Converted, Path]:
    """A Keras two-input/two-output model converted with ``--to all``; the samples it was verified on."""
    folder = tmp_path_factory.mktemp("keras2x2")
    source, samples = folder / "two.keras", folder / "samples.npz"
    run_step("tests.converters.shapes_steps:keras_two_in_two_out", {"path": str(source), "samples": str(samples)},
             folder / "steps")  # fmt: skip
    converted = cli_convert(source, folder / "repo", "two", "--to", "all", "--samples", str(samples))
    return converted, source


def test_keras_two_inputs_two_outputs_and_a_non_quantizing_int8(keras_two: tuple[Converted, Path]) -> None:
    converted, _ = keras_two
    results = converted.artifacts()
    assert converted.code == 1, converted.err
    for target in ("onnx", "savedmodel", "tflite", "tflite_fp16"):
        assert results[target]["passed"], (target, results[target]["reason"], results[target]["detail"])
        names = sorted(o["name"] for o in results[target]["signature"]["outputs"])
        assert names == ["digit", "score"], target
        assert sorted(i["name"] for i in results[target]["signature"]["inputs"]) == ["image", "meta"], target
    int8 = results["tflite_int8"]
    assert int8["passed"] is False and int8["stage"] == "quantization"
    assert int8["reason"].startswith("not quantized: the file holds no int8 weight tensor")
    assert int8["quantized_tensors"] == 0 and int8["published_version"] is None
    assert results["tflite_fp16"]["quantized_tensors"] > 0
    assert results["tflite_fp16"]["compression_vs_fp32"] < 0.9
    labels = load_model_config(converted.repo / "two" / CONFIG_FILE).labels
    assert "tflite_int8" not in labels and set(labels) == {"onnx", "savedmodel", "tflite", "tflite_fp16"}
    assert "FAIL tflite_int8" in converted.err and "not quantized" in converted.err


@pytest.mark.anyio
async def test_keras_two_inputs_two_outputs_served(keras_two: tuple[Converted, Path], tmp_path: Path) -> None:
    converted, source = keras_two
    samples = converted.repo.parent / "samples.npz"
    expected, _ = source_answers(source, "keras", samples, tmp_path)
    targets = {"onnx", "savedmodel", "tflite", "tflite_fp16"}
    answers = await served_answers(converted, dict(np.load(samples)), targets, registry_for(torchserve=False))
    assert set(answers) == targets
    assert_answers_like_source(converted, answers, expected)


@pytest.fixture(scope="module")
def keras_uint8(tmp_path_factory: pytest.TempPathFactory) -> tuple[Converted, Path, Path]:
    """uint8 images with Rescaling, BatchNorm and Dropout, converted to every target it supports."""
    folder = tmp_path_factory.mktemp("keras_u8")
    source, samples = folder / "u8.keras", folder / "u8.npy"
    run_step("tests.converters.shapes_steps:keras_uint8_bn_dropout", {"path": str(source), "samples": str(samples)},
             folder / "steps")  # fmt: skip
    converted = cli_convert(source, folder / "repo", "u8", "--to", "onnx,savedmodel,tflite,tflite_fp16",
                            "--samples", str(samples))  # fmt: skip
    return converted, source, samples


def test_keras_uint8_images_with_rescaling_batchnorm_and_dropout(keras_uint8: tuple[Converted, Path, Path]) -> None:
    """uint8 input end to end; BatchNorm and Dropout must run in inference mode in every artifact. The model
    is so small that float16 weights do not shrink the file: fp16 is flagged and not published (exit 1)."""
    converted, _, _ = keras_uint8
    assert converted.code == 1, converted.err
    assert converted.report["inputs"] == [{"name": "pixels", "datatype": "UINT8", "shape": [-1, 8, 8, 1]}]
    results = converted.artifacts()
    for target in ("onnx", "savedmodel", "tflite"):
        assert results[target]["passed"], (target, results[target]["reason"], results[target]["detail"])
        assert results[target]["signature"]["inputs"][0]["datatype"] == "UINT8", target
    fp16 = results["tflite_fp16"]
    assert fp16["stage"] == "quantization" and fp16["reason"].startswith("did not shrink: ")
    assert fp16["quantized_tensors"] > 0 and fp16["published_version"] is None
    assert "FAIL tflite_fp16" in converted.err


@pytest.mark.anyio
async def test_keras_uint8_images_served(keras_uint8: tuple[Converted, Path, Path], tmp_path: Path) -> None:
    converted, source, samples = keras_uint8
    inputs = {"pixels": np.load(samples)}
    np.savez(tmp_path / "inputs.npz", pixels=inputs["pixels"])
    expected, _ = source_answers(source, "keras", tmp_path / "inputs.npz", tmp_path)
    targets = {"onnx", "savedmodel", "tflite"}
    assert set(converted.published()) == targets
    answers = await served_answers(converted, inputs, targets, registry_for(torchserve=False))
    assert_answers_like_source(converted, answers, expected)


@pytest.fixture(scope="module")
def torch_converted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Converted, Path, Path]]:
    """Each torch model (.pt2) converted into its own repository with ``ROWS`` stored samples."""
    folder = tmp_path_factory.mktemp("torch_shapes")
    run_step("tests.converters.shapes_steps:torch_models", {"folder": str(folder)}, folder / "steps")
    rng = np.random.default_rng(0)
    converted = {}
    for model, (targets, extra, shapes) in TORCH.items():
        samples = folder / f"{model}-samples.npz"
        arrays: dict[str, Any] = {name: rng.random((ROWS, *shape), dtype=np.float32) for name, shape in shapes.items()}
        np.savez(samples, **arrays)
        source = folder / f"{model}.pt2"
        run = cli_convert(source, folder / model / "repo", model, "--to", targets, "--samples", str(samples), *extra)
        converted[model] = (run, source, samples)
    return converted


def test_torch_2d_input_reaches_savedmodel_and_tflite(
    torch_converted: dict[str, tuple[Converted, Path, Path]],
) -> None:
    converted, _, _ = torch_converted["mlp"]
    assert converted.code == 0, converted.err
    for target, result in converted.artifacts().items():
        assert result["passed"], (target, result["reason"])
        assert result["signature"]["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, 5]}], target
    assert "\x1b[" not in converted.err


def test_torch_two_inputs_with_a_tuple_output(torch_converted: dict[str, tuple[Converted, Path, Path]]) -> None:
    converted, _, _ = torch_converted["two_in_tuple"]
    assert converted.code == 0, converted.err
    for target, result in converted.artifacts().items():
        assert sorted(i["name"] for i in result["signature"]["inputs"]) == ["image", "meta"], target
        assert sorted(o["name"] for o in result["signature"]["outputs"]) == ["pooled", "probs"], target
        assert {c["output"] for c in result["checks"]} == {"probs", "pooled"}
    assert published(converted.repo, "two_in_tuple") == ["1", "2", "3", "4"]


def test_torch_dict_output_is_named_after_its_keys(torch_converted: dict[str, tuple[Converted, Path, Path]]) -> None:
    converted, _, _ = torch_converted["dict_out"]
    assert converted.code == 0, converted.err
    assert [o["name"] for o in converted.report["outputs"]] == ["probs", "logits"]
    for result in converted.report["artifacts"]:
        assert sorted(o["name"] for o in result["signature"]["outputs"]) == ["logits", "probs"]


@pytest.mark.parametrize("model", ["lstm", "gru"])
def test_recurrent_torch_model(model: str, torch_converted: dict[str, tuple[Converted, Path, Path]]) -> None:
    """SavedModel/TFLite: 'not supported' up front; TorchScript: pinned to batch 1 and correct there."""
    converted, _, _ = torch_converted[model]
    results = converted.artifacts()
    assert converted.code == 1, converted.err
    for target in ("savedmodel", "tflite", "tflite_fp16", "tflite_int8"):
        assert results[target]["stage"] == "unsupported", target
        assert results[target]["reason"].startswith(f"not supported for this model: PyTorch {model.upper()}")
    assert results["onnx"]["passed"], results["onnx"]["reason"]
    torchscript = results["torchscript"]
    assert torchscript["passed"], torchscript["reason"]
    assert torchscript["signature"]["inputs"][0]["shape"] == [1, 7, 3]
    assert {c["batch"] for c in torchscript["checks"]} == {1, ROWS}
    assert set(torchscript["latency"]) == {"1"}
    config = (converted.repo / model / str(torchscript["published_version"]) / CONFIG_FILE).read_text()
    assert "- 1\n" in config or "[1, 7, 3]" in config
    assert "Traceback" not in converted.err and "exit code -11" not in converted.err


@pytest.mark.anyio
@pytest.mark.parametrize("model", sorted(TORCH))
async def test_torch_model_served(
    model: str, torch_converted: dict[str, tuple[Converted, Path, Path]], tmp_path: Path
) -> None:
    """Every published version through the gateway; TorchScript on a real TorchServe for a few models."""
    converted, source, samples = torch_converted[model]
    expected, keys = source_answers(source, "torch_export", samples, tmp_path)
    if keys:  # a dict output: the versions' outputs are named after its keys, in its order
        assert [o["name"] for o in converted.report["outputs"]] == keys
    targets = set(converted.published()) - (set() if model in ON_TORCHSERVE else {"torchscript"})
    answers = await served_answers(converted, dict(np.load(samples)), targets, registry_for(model in ON_TORCHSERVE))
    assert set(answers) == targets and targets
    assert_answers_like_source(converted, answers, expected)
